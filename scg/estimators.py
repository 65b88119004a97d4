"""Gradient estimators for stochastic nodes, and baselines for the score function.

An estimator decides, for one stochastic node, how its value is drawn and what
it adds to the surrogate loss. The compiler (:mod:`scg.graph`) only calls the
hooks below, so a new estimator is a new class here and nothing else:

* ``check(dist, n, name)``: raise ``ValueError`` if the estimator cannot serve.
* ``draw(dist, n, rng) -> Tensor``: the node's value.
* ``log_prob(dist, value) -> Tensor | None``: the log-density the compiler needs
  (for score terms, enumeration weights and DiCE), or None if it needs none.
* ``axis``: ``"sample"`` if ``draw`` puts independent draws on a new leading
  axis (``n=K``), ``"enumerate"`` if it puts the whole support there, else None.
* ``score`` (bool): whether the node's log-probability must be credited with
  its downstream cost; then ``surrogate_term(node, signal)`` returns the term and
  the baseline it used (``signal.q`` is the node's learning signal, see
  :class:`scg.compiler.Signal`).
* ``enumerated`` (bool): costs downstream are weighted by the node's probability.
* ``update()``: apply running state recorded while surrogates were built (stateful
  baselines); call it after each optimiser step. Building a surrogate changes no state.
* ``corrects`` (bool): call ``surrogate_term(node, signal)`` even though the node is
  not a score-function node (``signal.q`` is then None): for estimators that correct
  a pathwise gradient, such as STL and DReG. The term's value is cancelled by the
  compiler, only its gradient counts.

``signal.bounds`` lists the costs declared with ``g.bound(..., over=node)`` (negative
multi-sample bounds over the node's own sample axis), whose per-sample log-weights
VIMCO, STL and DReG use.
"""

import warnings
import weakref

import numpy as np

from . import ops
from .optim import steps_taken
from .tensor import Tensor


class Estimator:
    """Base class of the per-node gradient estimators (the hooks are described above)."""

    score = False
    enumerated = False
    marginal = False
    corrects = False
    color = "#555555"  # how pictures draw the node's outline (subclasses inherit their parent's)

    def check(self, dist, n, name):
        """Raise ValueError (naming node ``name``) if this estimator cannot serve ``dist``."""

    def axis(self, n):
        """"sample" if draws get a new leading axis, "enumerate" for the support, else None."""
        return "sample" if n else None

    def draw(self, dist, n, rng):
        """The node's value: shape (n,) + batch + event (or the support for Enumerate)."""
        raise NotImplementedError

    def log_prob(self, dist, value):
        """The log-density the compiler needs for this node, or None."""
        return None

    def surrogate_term(self, node, signal):
        """(term, baseline): this node's term of the surrogate given its learning signal, or
        (None, None)."""
        return None, None

    def update(self):
        """Apply running statistics recorded while building surrogates (after the step)."""

    def describe(self):
        """A short label for pictures and logs."""
        return type(self).__name__

    def __repr__(self):
        return self.describe()


def _alternatives(dist):
    """The estimators that can serve ``dist`` without a reparameterized sample, as code."""
    names = ["scg.ScoreFunction()"]
    if getattr(dist, "has_enumerate_support", False):
        names.append("scg.Enumerate()")
    try:
        dist.relaxed(1.0)
        names.append("scg.GumbelSoftmax(temperature)")
    except NotImplementedError:
        pass
    return ", ".join(names)


class Reparam(Estimator):
    """Pathwise gradient: the value is ``dist.rsample()`` and gradients flow through it."""

    color = "#3b7dd8"

    def check(self, dist, n, name):
        if not dist.has_rsample:
            raise ValueError(
                f"Reparam for '{name}': {type(dist).__name__} has no reparameterized sample; "
                f"use {_alternatives(dist)}"
            )

    def draw(self, dist, n, rng):
        return dist.rsample((n,) if n else (), rng=rng)


class ScoreFunction(Estimator):
    """REINFORCE: surrogate term ``sum(log p(w) * stop_gradient(Q_w - b_w))`` where Q_w
    is the node's downstream cost; unbiased for any baseline b independent of w."""

    color = "#e07b00"
    score = True

    def __init__(self, baseline=None):
        self.baseline = baseline

    def check(self, dist, n, name):
        if self.baseline is not None:
            self.baseline.check(n, name)

    def draw(self, dist, n, rng):
        return dist.sample((n,) if n else (), rng=rng)

    def log_prob(self, dist, value):
        return dist.log_prob(value)

    def surrogate_term(self, node, signal):
        """``signal.q``: the downstream cost, shaped to broadcast against ``node.log_prob``."""
        if self.baseline is None:
            return ops.sum(node.log_prob * signal.q), None
        b, extra = self.baseline(node, signal)
        scale = self.baseline.scale(node.name)
        r = signal.q - b if scale == 1.0 else (signal.q - b) / scale
        term = ops.sum(node.log_prob * r)
        return (term if extra is None else term + extra), b

    def update(self):
        """Apply the baseline's recorded statistics (call after each optimiser step)."""
        if self.baseline is not None:
            self.baseline.update()

    def describe(self):
        return "ScoreFunction" + (f"({self.baseline.describe()})" if self.baseline is not None else "")


class Enumerate(Estimator):
    """Exact expectation over a finite support: the value is every support point on a
    new leading axis, and downstream costs are weighted by their probabilities."""

    enumerated = True
    color = "#2e9e4f"

    def check(self, dist, n, name):
        if not getattr(dist, "has_enumerate_support", False):
            raise ValueError(
                f"{type(self).__name__} for '{name}': {type(dist).__name__} has no finite support to enumerate; "
                f"use scg.Reparam() or scg.ScoreFunction()"
            )
        if n:
            raise ValueError(f"{type(self).__name__} for '{name}': n={n} makes no sense, the whole support is used")
        try:  # a joint support (Independent) may be too large: refused here, by name
            dist.enumerate_support(expand=False)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__} for '{name}': {e}") from None

    def axis(self, n):
        return "enumerate"

    def draw(self, dist, n, rng):
        return dist.enumerate_support(expand=True)

    def log_prob(self, dist, value):
        return dist.log_prob(value)


class Marginalize(Enumerate):
    """Sum the node out of the likelihood (Pyro's enumeration in the model): the node's value
    is its whole support, as for :class:`Enumerate`, but the costs that depend on it (its
    ``g.observe`` terms, log-densities, any cost read as a negative log-likelihood) are
    combined into one cost per datapoint,

        -log sum_z p(z | parents) exp(-sum of those costs at z),

    the negative marginal log-likelihood, in place of E_q[cost]. Marginalized nodes that
    share a cost (a chain, an HMM) are summed out together by variable elimination, newest
    first (:func:`scg.compiler.marginalize`): a chain of T nodes with K values costs about
    T K^2, not K^T. A step whose table exceeds ``Marginalize.limit`` values is refused with
    the count. The node's value is its support on its own axis, size 1 on its batch axes.
    Nothing may be sampled downstream of a marginalized node except another marginalized
    node."""

    marginal = True
    color = "#7a3fb0"
    limit = 2 ** 20

    def draw(self, dist, n, rng):
        # The support along the node's own axis only (size 1 on the batch axes, Pyro's
        # expand=False): a chain's values then carry one support axis each, so summing it
        # out step by step stays linear in its length.
        return dist.enumerate_support(expand=False)


class GumbelSoftmax(Estimator):
    """Continuous relaxation (Jang et al. 2017; Maddison et al. 2017): the value is a
    RelaxedBernoulli / RelaxedOneHotCategorical draw at ``temperature``, with pathwise
    gradients (biased; the bias shrinks as the temperature falls). With
    ``straight_through`` the forward value is the hard sample (0/1 or one-hot) and the
    gradient is the relaxed one. Categorical nodes take one-hot values. The relaxation is
    ``dist.relaxed(temperature)``, so any family that defines one can be relaxed."""

    color = "#8e44ad"

    def __init__(self, temperature, straight_through=False):
        if not temperature > 0:
            raise ValueError(f"GumbelSoftmax: temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.straight_through = straight_through

    def _relaxed(self, dist):
        return dist.relaxed(self.temperature)

    def check(self, dist, n, name):
        try:
            self._relaxed(dist)
        except NotImplementedError as e:
            raise ValueError(f"GumbelSoftmax for '{name}': {e}; use {_alternatives(dist)}") from None

    def draw(self, dist, n, rng):
        relaxed = self._relaxed(dist)
        soft = relaxed.rsample((n,) if n else (), rng=rng)
        if not self.straight_through:
            return soft
        if soft.shape[-1:] == relaxed.event_shape and relaxed.event_shape:
            hard = np.eye(soft.shape[-1], dtype=soft.dtype)[soft.data.argmax(-1)]
        else:
            hard = (soft.data > 0.5).astype(soft.dtype)
        return soft + (hard - ops.stop_gradient(soft))

    def describe(self):
        st = ", straight_through" if self.straight_through else ""
        return f"GumbelSoftmax(T={self.temperature:g}{st})"


# ---- multi-sample bounds: VIMCO, STL, DReG ----------------------------------------------
#
# For a bound c declared with g.bound(name, log_w, over=node): L = log (1/K) sum_k w_k over
# the node's sample axis, the cost is -L (times c.scale, for other sample axes and
# subsampled plates), and w~_k = softmax_k(log w) are the normalised weights.


def _sample_axis(bound):
    """Position of the bound's sample axis in ``bound.log_w``."""
    return bound.log_w_dims.index(bound.over.dim)


def _on_node(a, dims, node):
    """``a`` (ndarray, one entry of ``dims`` per axis: the log-weights' layout) summed over
    the axes the node lacks (unnamed ones included) and laid out on ``node.lp_dims``, so
    that it broadcasts against the node's log-prob like ``signal.q``."""
    from .compiler import to_positions  # the compiler imports this module

    axes = tuple(i for i, d in enumerate(dims) if d is None or d not in node.lp_dims)
    if axes:
        a = a.sum(axis=axes)
    kept = [d for d in dims if d is not None and d in node.lp_dims]
    return to_positions(a, kept, node.lp_dims)


def _logmeanexp(a, axis):
    """log mean exp of ndarray ``a`` along ``axis`` (stable; -inf where every entry is -inf)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.mean(np.exp(a - m), axis=axis)) + np.squeeze(m, axis)


def _bounds_of(node, signal, who):
    """The bounds over the node's sample axis, refused where the estimator cannot use them."""
    if not signal.bounds:
        raise ValueError(
            f"{who} for '{node.name}': no bound over its sample axis; declare the cost with "
            f"g.bound(name, log_w, over='{node.name}') (log_w: one log-weight per sample)"
        )
    for c in signal.bounds:
        enum = [d for d in c.log_w_dims if d is not None and d.kind == "enumerate"]
        if enum:
            raise ValueError(
                f"{who} for '{node.name}': bound '{c.name}' depends on the enumerated "
                f"{enum[0].describe()}, whose probabilities would weight the per-sample signals; "
                f"use a score-function estimator for that node"
            )
    return signal.bounds


class VIMCO(ScoreFunction):
    """Score function for a node drawn with ``n=K >= 2`` under a multi-sample bound
    (``g.bound(name, log_w, over=node)``), with per-sample learning signals (Mnih &
    Rezende 2016): sample k's signal is ``-(L - L_{-k})`` times the bound's scale, the
    leave-one-out baseline of :class:`LeaveOneOutBoundBaseline`. Other costs credited to
    the node keep the plain score-function signal. Unbiased; refused without a bound."""

    def __init__(self):
        super().__init__(baseline=LeaveOneOutBoundBaseline())

    def describe(self):
        return "VIMCO"


def _normalised_weights(bound):
    """w~ = softmax of ``log_w`` over the sample axis (ndarray shaped like ``log_w``)."""
    lw = bound.log_w.data
    pos = _sample_axis(bound)
    m = np.max(lw, axis=pos, keepdims=True)
    e = np.exp(lw - m)
    return e / e.sum(axis=pos, keepdims=True)


def _score_term(node, bound, coef):
    """``-sum(coef * log q(stop_gradient(z)))``: ``coef`` (ndarray on ``log_w``'s layout)
    laid on the node; the gradient is ``-sum_k coef_k d_phi log q(z_k; phi)`` at fixed z."""
    unnamed = [i for i, d in enumerate(bound.log_w_dims) if d is None and bound.log_w.shape[i] != 1]
    if unnamed:
        raise ValueError(
            f"{type(node.estimator).__name__} for '{node.name}': the log-weights of bound '{bound.name}' "
            f"(shape {bound.log_w.shape}) have unnamed axes {unnamed}, so which element of '{node.name}' "
            f"each weight belongs to is unknown; sum log_w to one log-weight per sample (and datapoint)"
        )
    log_q = node.dist.log_prob(ops.stop_gradient(node.value))
    c = _on_node(coef, bound.log_w_dims, node).astype(log_q.dtype, copy=False)
    return -ops.sum(log_q * c)


class STL(Reparam):
    """"Sticking the landing" (Roeder et al. 2017) for a reparameterized node under bounds
    declared with ``g.bound(..., over=node)``: the pathwise gradient without the score
    term of q's own parameters, ``-scale * sum_k w~_k d_z log w_k . d_phi z_k``; for the
    ELBO (n=1) it is unbiased and exactly zero when q is the true posterior. Assumes
    ``log_w`` contains ``-q.log_prob(z)`` of this node's distribution (the paper's
    setting). For K > 1 it is biased (Tucker et al. 2019); use :class:`DReG` there.
    Adds ``-scale * sum_k sg(w~_k) log q(sg(z_k); phi)`` to the surrogate."""

    corrects = True

    def surrogate_term(self, node, signal):
        term = None
        for c in _bounds_of(node, signal, "STL"):
            t = _score_term(node, c, c.scale * _normalised_weights(c))
            term = t if term is None else term + t
        return term, None


def _refuse_score_between(node, bound, g):
    """DReG rewrites E[w~_k d log q(z_k)] as a pathwise term, which needs log w_k to depend on
    z_k only through differentiable paths: refuse a bound whose log-weights depend on a
    score-function node downstream of ``node`` (its sampling depends on z_k too)."""
    if g is None:
        return
    from .graph import _bits

    for i in _bits(bound.info.anc & g.score_mask & ~node.bit):
        s = g.stochastic[i]
        if s.info.anc & node.bit:
            raise ValueError(
                f"DReG for '{node.name}': the log-weights of bound '{bound.name}' depend on the "
                f"score-function node '{s.name}', which is drawn given '{node.name}'; DReG's pathwise "
                f"rewrite cannot see that dependence (the estimate would be biased). Use scg.Reparam() "
                f"or scg.STL() for '{node.name}', or a reparameterized estimator for '{s.name}'"
            )


class DReG(Reparam):
    """Doubly reparameterized gradient (Tucker et al. 2019) for a reparameterized node
    under bounds declared with ``g.bound(..., over=node)``: the encoder gradient of the
    bound is estimated by ``-scale * sum_k w~_k^2 d_z log w_k . d_phi z_k`` (unbiased, its
    SNR does not fall as K grows), while parameters inside ``log_w`` but not upstream of
    z (the decoder's) keep the standard gradient. Assumes ``log_w`` contains
    ``-q.log_prob(z)`` of this node's distribution. To the standard gradient
    ``-scale * sum_k w~_k (path_k - score_k)`` it adds
    ``scale * sum_k (w~_k - w~_k^2) path_k`` (one extra backward from ``log_w`` to z)
    and the STL term ``-scale * sum_k w~_k score_k``."""

    corrects = True

    def surrogate_term(self, node, signal):
        from .autodiff import grad

        term = None
        for c in _bounds_of(node, signal, "DReG"):
            _refuse_score_between(node, c, signal.graph)
            wt = _normalised_weights(c)
            t = _score_term(node, c, c.scale * wt)
            if node.value.requires_grad and c.log_w.requires_grad:
                coef = (c.scale * (wt - wt * wt)).astype(c.log_w.dtype, copy=False)
                (gz,) = grad(c.log_w, node.value, grad_outputs=coef, retain_graph=True)
                t = t + ops.sum(ops.stop_gradient(gz) * node.value)
            term = t if term is None else term + t
        return term, None


# ---- antithetic and control-variate estimators for Bernoulli nodes ------------------------------
#
# DisARM, ARM and RELAX serve Bernoulli nodes, and Independent(Bernoulli) ones whose
# event (a vector of coins) shares one downstream cost per element of the log-prob, as
# in the papers' multivariate form. Each returns a term ``sum(a * stop_gradient(g))``
# with a the logits, so its gradient with respect to a is the estimate g (one number per
# coin) and flows on to whatever computed the logits.


class NoisyValue(Tensor):
    """A drawn value that keeps the uniform noise it was drawn from (``noise``, a tuple of
    ndarrays): estimators whose gradient needs the noise read it from the node's value.
    A replayed value is a plain Tensor and has none."""

    __slots__ = ("noise",)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning at large |x|


def _bernoulli(dist, who, name):
    """(logits Tensor of shape batch + event, number of event axes) of a Bernoulli node,
    also wrapped in Independent and ExpandedDistribution (an expand, or a plate's)."""
    from . import distributions as D

    if isinstance(dist, D.Bernoulli):
        return dist.logits, 0
    if isinstance(dist, D.Independent):
        logits, _ = _bernoulli(dist.base_dist, who, name)
        return logits, dist.reinterpreted_batch_ndims
    if isinstance(dist, D.ExpandedDistribution):
        logits, event_nd = _bernoulli(dist.base_dist, who, name)
        return dist.lay(logits, event_nd), event_nd
    other = "scg.Reparam(), scg.ScoreFunction()" if dist.has_rsample else _alternatives(dist)
    raise ValueError(
        f"{who} for '{name}': applies to Bernoulli (or Independent(Bernoulli)) nodes only, "
        f"not {type(dist).__name__}; use {other}"
    )


def _innermost(dist):
    while hasattr(dist, "base_dist"):
        dist = dist.base_dist
    return dist


def _saturated(dist, who, name):
    """Boolean array (batch + event) of the coins whose logit is +-inf. Refused where the
    node was given ``probs`` of exactly 0 or 1: there d/dp E[f] = f(1) - f(0) is not zero,
    but both samples of a pair are always equal, so no antithetic (or relaxed) estimate of it
    exists. With logits +-inf the gradient with respect to the logit is zero, as the
    estimate is once those coins are left out (0 * inf would be NaN)."""
    base = _innermost(dist)
    if base._given == "probs":
        p = base.probs.data
        if ((p == 0) | (p == 1)).any():
            raise ValueError(
                f"{who} for '{name}': probs holds {p[(p == 0) | (p == 1)].flat[0]:g} (exactly 0 or 1), where "
                f"the two samples of a pair are always equal, so d/dp cannot be estimated from them. Keep probs "
                f"inside (0, 1), give logits, or use scg.Enumerate() / scg.ScoreFunction() for '{name}'"
            )
    logits, _ = _bernoulli(dist, who, name)
    return np.broadcast_to(~np.isfinite(logits.data), tuple(dist.batch_shape) + tuple(dist.event_shape))


def _no_noise(who, node):
    return ValueError(
        f"{who} for '{node.name}': the value was replayed, so the uniform noise it was drawn from "
        f"is unknown and the estimator needs it; use scg.DisARM() (needs only the pairs) or "
        f"scg.ScoreFunction() for replayed values"
    )


class _AntitheticBernoulli(Estimator):
    """Shared by ARM and DisARM: ``n=2m`` draws, sample k and sample k+m an antithetic pair
    from one uniform u (shape (m,) + batch + event): b = 1[u < sigma(a)] and
    b~ = 1[1 - u < sigma(a)]. Each sample alone is an exact Bernoulli draw."""

    score = True

    def check(self, dist, n, name):
        _bernoulli(dist, type(self).__name__, name)
        if not n or n % 2:
            raise ValueError(
                f"{type(self).__name__} for '{name}' needs antithetic pairs: draw with n=2 (or an even "
                f"n=2m, samples k and k+m paired), got n={n}"
            )

    def draw(self, dist, n, rng):
        logits, _ = _bernoulli(dist, type(self).__name__, "?")
        p = _sigmoid(logits.data)
        u = rng.random((n // 2,) + tuple(dist.batch_shape) + tuple(dist.event_shape))
        pair = np.concatenate([u < p, 1.0 - u < p]).astype(dist.dtype)
        value = NoisyValue(pair)
        value.noise = (u,)
        return value

    def log_prob(self, dist, value):
        return dist.log_prob(value)  # for credit shapes and DiCE (score function on each sample)

    def weights(self, node, f, f_anti, b, b_anti, a):
        """g_a per pair and coin, (m,) + batch + event, from the costs (f, f_anti) and values
        (b, b_anti) of the pair's two halves and the logits a (batch + event)."""
        raise NotImplementedError

    def surrogate_term(self, node, signal):
        """``signal.q[k]`` (shaped like the log-prob, sample axis first) is sample k's cost
        already weighted by 1/n; so the mean of the m pair estimates is a plain sum over pairs."""
        who = type(self).__name__
        if signal.own_axis_pooled:
            raise ValueError(
                f"{who} for '{node.name}': the downstream costs reduce over the {node.n} samples (e.g. a "
                f"multi-sample bound), but {who} needs each sample's own cost f(b) and f(b~); keep "
                f"per-sample costs or use scg.ScoreFunction()"
            )
        logits, event_nd = _bernoulli(node.dist, who, node.name)
        saturated = _saturated(node.dist, who, node.name)
        if saturated.any():  # zero gradient there (see _saturated)
            logits = ops.where(saturated, 0, logits)
        q = np.broadcast_to(signal.q, node.log_prob.shape)
        q = q.reshape(q.shape + (1,) * event_nd)  # one cost per coin of the event
        m = node.n // 2
        b = node.value.data
        g = self.weights(node, q[:m], q[m:], b[:m], b[m:], np.broadcast_to(logits.data, b.shape[1:]))
        g = g.astype(logits.dtype, copy=False)  # u is float64; the term keeps the logits' dtype
        return ops.sum(logits * g), None  # logits broadcast over the pairs


class DisARM(_AntitheticBernoulli):
    """DisARM (Dong, Mnih & Tucker 2020) for Bernoulli nodes drawn in antithetic pairs
    (``n=2``, or ``n=2m`` with samples k and k+m paired; see ``_AntitheticBernoulli``).

    Per coin with logit a and pair (b, b~): ``g_a = 1/2 (f(b) - f(b~)) (-1)^b~ 1[b != b~]
    sigma(|a|)``, averaged over the pairs, with f the node's whole downstream cost of that
    sample (for Independent(Bernoulli), the joint cost of the event). It is ARM with u
    integrated out given the pair, so it needs only the values (replay works) and has
    lower variance than ARM. Unbiased; no parameters."""

    def weights(self, node, f, f_anti, b, b_anti, a):
        """Per pair and coin: (q - q~) (-1)^b~ 1[b != b~] sigma(|a|) (q = f / n, so the 1/2
        and the mean over the m pairs are already in it)."""
        return (f - f_anti) * (1.0 - 2.0 * b_anti) * (b != b_anti) * _sigmoid(np.abs(a))


class ARM(_AntitheticBernoulli):
    """ARM (Yin & Zhou 2019) for Bernoulli nodes drawn in antithetic pairs (as DisARM).

    Per coin with logit a, uniform u and pair b = 1[u < sigma(a)], b~ = 1[u > sigma(-a)]:
    ``g_a = (f(b~) - f(b)) (u - 1/2)``, averaged over the pairs. Needs u, which the drawn
    value keeps (a replayed value is refused). Unbiased; DisARM is its conditional
    expectation given the pair and never has higher variance."""

    def weights(self, node, f, f_anti, b, b_anti, a):
        """Per pair and coin: 2 (q~ - q) (u - 1/2) (q = f / n: the mean over the pairs)."""
        noise = getattr(node.value, "noise", None)
        if noise is None:
            raise _no_noise("ARM", node)
        return 2.0 * (f_anti - f) * (noise[0] - 0.5)


def _control_scale(node):
    """The weight the node's own axes give its costs (1/K per sample axis, N/B per
    subsampled plate), so the control is compared with f on the scale of ``signal.q``."""
    s = 1.0
    for d in node.dims:
        s *= 1.0 / d.size if d.kind == "sample" else d.scale if d.kind == "plate" else 1.0
    return s


class RELAX(Estimator):
    """RELAX (Grathwohl et al. 2018) for Bernoulli nodes (and Independent(Bernoulli)).

    With logits a and uniforms u, v (shaped like the value): z = a + logit(u), b = 1[z > 0]
    (an exact Bernoulli draw), and z~ ~ p(z | b) reparameterised by v: z~ = a + logit(u~),
    u~ = 1 - p + v p if b = 1 else v (1 - p), p = sigma(a). Per coin:

        g_a = [f(b) - c(z~)] d_a log p(b) + d_a c(z) - d_a c(z~)

    where ``control(z, *context)`` (an ``scg.nn.Module``; ``context`` as given to
    ``g.sample``, passed with its gradient stopped) returns one number per element of the
    node's log-prob (shape (n,) + batch, a trailing axis of size 1 allowed). Element i of
    the control may depend only on element i of z (its event) and the context, as a
    network applied row-wise does: then g is unbiased for any control. It is scaled like
    the node's costs (1/n for its sample axis, N/B for subsampled plates).

    The control is trained by the same backward pass to minimise the estimator's variance:
    the surrogate gains ``sum(g_a^2)`` (g computed with ``create_graph=True``), whose
    gradient with respect to the control's parameters is ``d_phi sum(g_a^2)`` (= d_phi of
    the variance, as E[g] does not depend on phi) and with respect to a is zero. Include
    the control's parameters in the optimiser. Needs the drawn noise (no replay)."""

    score = True

    def __init__(self, control):
        if not callable(control):
            raise ValueError(f"RELAX: control must be callable (an scg.nn.Module), got {type(control).__name__}")
        self.control = control

    def check(self, dist, n, name):
        _bernoulli(dist, "RELAX", name)

    @staticmethod
    def _logit_noise(u, dtype):
        return (np.log(u) - np.log1p(-u)).astype(dtype)

    def draw(self, dist, n, rng):
        logits, _ = _bernoulli(dist, "RELAX", "?")
        shape = ((n,) if n else ()) + tuple(dist.batch_shape) + tuple(dist.event_shape)
        u, v = rng.random(shape), rng.random(shape)
        z = logits.data + self._logit_noise(u, logits.dtype)  # same arithmetic as surrogate_term
        value = NoisyValue((z > 0).astype(dist.dtype))
        value.noise = (u, v)
        return value

    def log_prob(self, dist, value):
        return dist.log_prob(value)

    def _control(self, node, z):
        context = node.context if node.context is not None else ()
        context = context if isinstance(context, (tuple, list)) else (context,)
        context = [ops.stop_gradient(c) if isinstance(c, Tensor) else c for c in context]
        c = self.control(z, *context)
        c = c if isinstance(c, Tensor) else Tensor(np.asarray(c, dtype=z.dtype))
        want = node.log_prob.shape
        if c.shape == want + (1,):
            c = c.reshape(want)
        if c.shape != want:
            raise ValueError(
                f"RELAX for '{node.name}': control(z) returned shape {c.shape}, but it must give one "
                f"number per element of the node's log-prob, shape {want} (z has shape {z.shape})"
            )
        return c

    def surrogate_term(self, node, signal):
        from .autodiff import grad

        noise = getattr(node.value, "noise", None)
        if noise is None:
            raise _no_noise("RELAX", node)
        u, v = noise
        logits, event_nd = _bernoulli(node.dist, "RELAX", node.name)
        saturated = _saturated(node.dist, "RELAX", node.name)
        if saturated.any():  # zero gradient there (see _saturated): compute at logit 0, then drop
            logits = ops.where(saturated, 0, logits)
        # The uniforms are float64; constants from them are cast to the logits' dtype (the logs
        # first: a float32 v may round to 1) so float32 logits keep a float32 estimate.
        log_v, log1m_v = np.log(v).astype(logits.dtype), np.log1p(-v).astype(logits.dtype)
        v = v.astype(logits.dtype)
        b = node.value.data
        # A detached copy of the logits, one per element: g is differentiated with respect
        # to it, so sum(g^2) sends gradient to the control only.
        a = Tensor(np.broadcast_to(logits.data, b.shape).copy(), requires_grad=True)
        z = a + self._logit_noise(u, logits.dtype)
        log_p, log_q = -ops.softplus(-a), -ops.softplus(a)  # log p, log(1 - p)
        p = ops.exp(log_p)
        z1 = a + ops.log(1.0 - p + v * p) - log_p - log1m_v  # u~ = 1 - p + v p
        z0 = a + log_v + log_q - ops.log(1.0 - v * (1.0 - p))  # u~ = v (1 - p)
        z_cond = ops.where(b == 1, z1, z0)
        c_z, c_cond = self._control(node, z), self._control(node, z_cond)
        s = _control_scale(node)
        diff = ops.sum(c_z) - ops.sum(c_cond)
        d = grad(diff, [a], create_graph=True)[0] if diff.requires_grad else Tensor(np.zeros(b.shape, dtype=a.dtype))
        event = (1,) * event_nd
        q = np.broadcast_to(signal.q, node.log_prob.shape).reshape(node.log_prob.shape + event)
        score = b - _sigmoid(a.data)  # d_a log p(b), per coin
        g = (q - s * c_cond.reshape(c_cond.shape + event)) * score + s * d
        if saturated.any():
            g = ops.where(saturated, 0, g)
        return ops.sum(logits * ops.stop_gradient(g)) + ops.sum(g * g), None

    def describe(self):
        return f"RELAX({type(self.control).__name__})"


# ---- baselines --------------------------------------------------------------------
#
# Running state is updated explicitly. Building a surrogate only *records* the statistic
# a stateful baseline will learn from (per node, the latest build wins); ``update()``,
# called after the optimiser step, folds the recorded statistics into the running state.
# So measuring (building surrogates to estimate a variance, say) never moves a baseline
# unless ``update()`` follows. ``ScoreFunction.update()`` forwards to its baseline.


class Baseline:
    """``__call__(node, signal) -> (b, extra)``: the baseline (array, broadcastable to
    ``signal.q``, independent of the node's value) and an optional extra surrogate term.
    ``scale(name)``: a positive number, fixed before this step, that the node's learning
    signal ``Q - b`` is divided by (1 unless normalising). ``update()``: apply the running
    statistics recorded by the latest ``__call__`` of each node (no-op if stateless)."""

    def check(self, n, name):
        """Raise ValueError if the baseline cannot serve a node drawn with ``n`` samples."""

    def scale(self, name):
        """What node ``name``'s signal ``Q - b`` is divided by (from previous steps only)."""
        return 1.0

    def update(self):
        """Fold the statistics recorded since the last update into the running state."""

    def describe(self):
        """A short label for pictures and logs."""
        return type(self).__name__


class RunningMean:
    """Bias-corrected exponential moving averages, one per key, updated explicitly:
    ``record(key, x)`` keeps x as pending (replacing an earlier pending x of that key),
    ``update()`` applies every pending x: ``m <- decay m + (1 - decay) x``;
    ``value(key)`` is ``m / (1 - decay^count)`` (``default`` before any update).

    A statistic still pending after an optimiser step (``scg.optim.steps_taken``) was never
    applied: the step used the old average, and without ``update()`` the average never moves
    (stays 0). ``record`` warns when it would drop such a statistic (``update()`` forgotten),
    and when baselines were thrown away holding one (a baseline created inside the step
    function starts from 0 every step). Surrogates built without optimiser steps in between
    (measuring a gradient many times) warn of nothing."""

    def __init__(self, decay, owner="baseline"):
        self.decay = decay
        self.owner = owner
        self.state = {}  # key -> (average, number of updates)
        self.pending = {}  # key -> (statistic recorded since the last update, steps_taken then)
        self._finalizer = None
        self._warned = False

    def value(self, key, default=0.0):
        """The bias-corrected average of ``key`` (``default`` before its first update)."""
        avg, count = self.state.get(key, (0.0, 0))
        return avg / (1 - self.decay**count) if count else default

    def record(self, key, x):
        """Keep ``x`` as the statistic ``update()`` will fold in for ``key``."""
        now = steps_taken()
        name = key[0] if isinstance(key, tuple) else key
        old = self.pending.get(key)
        if old is not None and old[1] < now and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.owner} of '{name}': the statistic recorded before the last optimiser step was "
                f"never applied, so this baseline {'is still 0' if not self.state else 'is not moving'}. "
                f"Call baseline.update() (or estimator.update()) after each optimiser step",
                stacklevel=4,
            )
        if _DISCARDED[0] >= 2 and not _DISCARDED[1]:
            _DISCARDED[1] = True
            warnings.warn(
                f"{_DISCARDED[0]} stateful baselines were thrown away holding statistics they never "
                f"applied, so each started from 0 ({self.owner} of '{name}' is one more). Create the "
                f"baseline once, outside the function that builds the graph, reuse it every step and "
                f"call its update() after each optimiser step",
                stacklevel=4,
            )
        self.pending[key] = (x, now)
        if self._finalizer is None:  # watches the dict, not self (which it must not keep alive)
            self._finalizer = weakref.finalize(self, _on_discard, self.pending)

    def update(self):
        """Fold every recorded statistic into its average and forget them."""
        for key, (x, _) in self.pending.items():
            avg, count = self.state.get(key, (0.0, 0))
            self.state[key] = (self.decay * avg + (1 - self.decay) * x, count + 1)
        self.pending.clear()  # in place: the finalizer watches this dict


_DISCARDED = [0, False]  # baselines discarded with a statistic pending across a step; warned yet


def _on_discard(pending):
    if any(step < steps_taken() for _, step in pending.values()):
        _DISCARDED[0] += 1


class MovingAverageBaseline(Baseline):
    """b = exponential moving average (``decay``) of the node's mean downstream cost over
    previous steps (bias-corrected; 0 before the first update). One object per model,
    reused across steps; state is kept per node name. Building a surrogate records the
    step's mean cost; call ``update()`` (or the estimator's) after each step to apply it."""

    def __init__(self, decay=0.9):
        if not 0 <= decay < 1:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.average = RunningMean(decay, owner="MovingAverageBaseline")

    def __call__(self, node, signal):
        self.average.record(node.name, float(np.mean(signal.q)))
        return self.average.value(node.name), None

    def update(self):
        self.average.update()

    def describe(self):
        return f"MovingAverage({self.decay:g})"


class LeaveOneOutBaseline(Baseline):
    """For a node drawn with ``n=K >= 2``: sample k's baseline is the mean downstream cost
    of the other K-1 samples (as in VIMCO / RLOO), independent of sample k."""

    def check(self, n, name):
        if not n or n < 2:
            raise ValueError(
                f"LeaveOneOutBaseline for '{name}' needs n >= 2 samples (g.sample(..., n=K)), got n={n}"
            )

    def __call__(self, node, signal):
        k = node.n
        if signal.own_axis_pooled:
            raise ValueError(
                f"LeaveOneOutBaseline for '{node.name}': the downstream costs do not keep the sample "
                f"axis (they reduce over the {node.n} samples), so a leave-one-out baseline would "
                f"depend on the sample itself; keep per-sample costs or use another baseline"
            )
        q = np.broadcast_to(signal.q, (k,) + signal.q.shape[1:])
        return (q.sum(axis=0, keepdims=True) - q) / (k - 1), None

    def describe(self):
        return "LeaveOneOut"


class LearnedBaseline(Baseline):
    """b = c + ``module(*context)`` where ``context`` is what ``g.sample(..., context=...)``
    passed (nothing by default) and c is a moving average (``center`` decay, bias-corrected,
    from previous steps) of the node's mean downstream cost, so the module only learns the
    input-dependent residual (as in NVIL, Mnih & Gregor 2014); ``center=None`` drops c.
    The module is trained by the same backward pass to predict the downstream cost: the
    surrogate gains ``sum((b - Q)^2)`` (its value cancels out of the reported loss). The
    module's output must broadcast against the node's log-prob (e.g. (B,) in a plate).

    ``normalize`` (a decay in [0, 1), or True for 0.9) adds NVIL's variance normalisation:
    the node's signal becomes ``(Q - b) / max(1, s)`` where ``s^2 = E[r^2] - E[r]^2`` from
    moving averages (bias-corrected) of the per-step means of r = Q - b and r^2 over the
    node's elements. s comes from previous steps only, so the division rescales the node's
    score term by a positive constant: the direction of that term's expected gradient is
    unchanged (it estimates ``grad E[cost] / max(1, s)`` for the parameters reached only
    through this node's log-prob), only its size is tamed. ``update()`` after each step
    applies the recorded statistics (centre and normaliser)."""

    def __init__(self, module, center=0.9, normalize=None):
        if center is not None and not 0 <= center < 1:
            raise ValueError(f"LearnedBaseline: center must be None or a decay in [0, 1), got {center}")
        if normalize is True:
            normalize = 0.9
        if normalize is False:
            normalize = None
        if normalize is not None and not 0 <= normalize < 1:
            raise ValueError(
                f"LearnedBaseline: normalize must be None, True or a decay in [0, 1), got {normalize}")
        self.module = module
        self.center = MovingAverageBaseline(center) if center is not None else None
        self.normalize = normalize
        self.moments = RunningMean(normalize, owner="LearnedBaseline") if normalize is not None else None

    def __call__(self, node, signal):
        q = signal.q
        context = node.context if node.context is not None else ()
        b = self.module(*(context if isinstance(context, (tuple, list)) else (context,)))
        b = b if isinstance(b, Tensor) else Tensor(np.asarray(b))
        if self.center is not None:
            c, _ = self.center(node, signal)
            b = b + np.asarray(c, dtype=b.dtype)
        if self.moments is not None:
            r = np.broadcast_to(q - b.data, np.broadcast_shapes(np.shape(q), b.shape))
            self.moments.record((node.name, 1), float(np.mean(r)))
            self.moments.record((node.name, 2), float(np.mean(r * r)))
        fit = ops.sum((b - q) ** 2)
        return ops.stop_gradient(b).data, fit - ops.stop_gradient(fit)

    def scale(self, name):
        if self.moments is None:
            return 1.0
        mean = self.moments.value((name, 1))
        var = max(self.moments.value((name, 2)) - mean * mean, 0.0)
        return max(1.0, float(np.sqrt(var)))

    def update(self):
        if self.center is not None:
            self.center.update()
        if self.moments is not None:
            self.moments.update()

    def describe(self):
        norm = ", normalized" if self.moments is not None else ""
        return f"Learned({type(self.module).__name__}{norm})"


class LeaveOneOutBoundBaseline(Baseline):
    """VIMCO's baseline (Mnih & Rezende 2016), for a node drawn with ``n=K >= 2`` under
    bounds declared with ``g.bound(..., over=node)``: for sample k and each bound,
    ``b_k = -scale * L_{-k}`` with ``L_{-k} = log mean_j w'_j``, where w' is w with
    ``log w_k`` replaced by the mean of the other K-1 log-weights (independent of sample k).
    The learning signal of sample k is then ``-scale * (L - L_{-k})``. Follows the
    :class:`Baseline` protocol; costs other than the node's bounds get no baseline."""

    def check(self, n, name):
        """Raise ValueError unless the node is drawn with ``n >= 2`` samples."""
        if not n or n < 2:
            raise ValueError(f"VIMCO for '{name}' needs n >= 2 samples (g.sample(..., n=K)), got n={n}")

    def __call__(self, node, signal):
        b = 0.0
        for c in _bounds_of(node, signal, "VIMCO"):
            pos = _sample_axis(c)
            lw = np.moveaxis(c.log_w.data, pos, 0)  # (K, ...)
            k = lw.shape[0]
            eye = np.eye(k, dtype=bool).reshape((k, k) + (1,) * (lw.ndim - 1))
            rows = np.broadcast_to(lw, (k,) + lw.shape)  # rows[k, j] = log w_j
            with np.errstate(invalid="ignore"):
                others = np.where(eye, 0.0, rows).sum(axis=1) / (k - 1)  # mean of log w_j, j != k
            loo = _logmeanexp(np.where(eye, others[:, None], rows), axis=1)  # L_{-k}, (K, ...)
            # Where every other weight is zero, L_{-k} = -inf says nothing: no baseline there
            # (still independent of sample k, so still unbiased).
            loo = np.where(np.isfinite(loo), loo, 0.0)
            b = b + _on_node(np.moveaxis(-c.scale * loo, 0, pos), c.log_w_dims, node)
        return np.asarray(b, dtype=node.log_prob.dtype), None

    def describe(self):
        """A short label for pictures and logs."""
        return "LeaveOneOutBound"

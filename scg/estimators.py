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
* ``corrects`` (bool): call ``surrogate_term(node, signal)`` even though the node is
  not a score-function node (``signal.q`` is then None): for estimators that correct
  a pathwise gradient, such as STL and DReG. The term's value is cancelled by the
  compiler, only its gradient counts.

``signal.bounds`` lists the costs declared with ``g.bound(..., over=node)`` (negative
multi-sample bounds over the node's own sample axis), whose per-sample log-weights
VIMCO, STL and DReG use.
"""

import numpy as np

from . import ops
from .tensor import Tensor


class Estimator:
    """Base class of the per-node gradient estimators (the hooks are described above)."""

    score = False
    enumerated = False
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

    score = True
    color = "#e07b00"

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
        term = ops.sum(node.log_prob * (signal.q - b))
        return (term if extra is None else term + extra), b

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
                f"Enumerate for '{name}': {type(dist).__name__} has no finite support to enumerate; "
                f"use scg.Reparam() or scg.ScoreFunction()"
            )
        if n:
            raise ValueError(f"Enumerate for '{name}': n={n} makes no sense, the whole support is used")

    def axis(self, n):
        return "enumerate"

    def draw(self, dist, n, rng):
        return dist.enumerate_support(expand=True)

    def log_prob(self, dist, value):
        return dist.log_prob(value)


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


class LeaveOneOutBoundBaseline:
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
            wt = _normalised_weights(c)
            t = _score_term(node, c, c.scale * wt)
            if node.value.requires_grad and c.log_w.requires_grad:
                coef = (c.scale * (wt - wt * wt)).astype(c.log_w.dtype, copy=False)
                (gz,) = grad(c.log_w, node.value, grad_outputs=coef, retain_graph=True)
                t = t + ops.sum(ops.stop_gradient(gz) * node.value)
            term = t if term is None else term + t
        return term, None


# ---- baselines --------------------------------------------------------------------


class Baseline:
    """``__call__(node, signal) -> (b, extra)``: the baseline (array, broadcastable to
    ``signal.q``, independent of the node's value) and an optional extra surrogate term."""

    def check(self, n, name):
        """Raise ValueError if the baseline cannot serve a node drawn with ``n`` samples."""

    def describe(self):
        """A short label for pictures and logs."""
        return type(self).__name__


class MovingAverageBaseline(Baseline):
    """b = exponential moving average (``decay``) of the node's mean downstream cost over
    previous steps (bias-corrected; 0 on the first step). One object per model, reused
    across steps; state is kept per node name."""

    def __init__(self, decay=0.9):
        if not 0 <= decay < 1:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.state = {}  # node name -> (average, number of updates)

    def __call__(self, node, signal):
        avg, count = self.state.get(node.name, (0.0, 0))
        b = avg / (1 - self.decay**count) if count else 0.0
        self.state[node.name] = (self.decay * avg + (1 - self.decay) * float(np.mean(signal.q)), count + 1)
        return b, None

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
    module's output must broadcast against the node's log-prob (e.g. (B,) in a plate)."""

    def __init__(self, module, center=0.9):
        if center is not None and not 0 <= center < 1:
            raise ValueError(f"LearnedBaseline: center must be None or a decay in [0, 1), got {center}")
        self.module = module
        self.center = MovingAverageBaseline(center) if center is not None else None

    def __call__(self, node, signal):
        q = signal.q
        context = node.context if node.context is not None else ()
        b = self.module(*(context if isinstance(context, (tuple, list)) else (context,)))
        b = b if isinstance(b, Tensor) else Tensor(np.asarray(b))
        if self.center is not None:
            c, _ = self.center(node, signal)
            b = b + np.asarray(c, dtype=b.dtype)
        fit = ops.sum((b - q) ** 2)
        return ops.stop_gradient(b).data, fit - ops.stop_gradient(fit)

    def describe(self):
        return f"Learned({type(self.module).__name__})"

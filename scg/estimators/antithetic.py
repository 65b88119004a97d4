"""Antithetic estimators for Bernoulli nodes: DisARM (Dong et al. 2020) and ARM (Yin & Zhou
2019), and the Bernoulli helpers RELAX shares."""

import numpy as np

from .. import distributions as D
from .. import ops
from ..tensor import Tensor
from .base import Estimator, _alternatives


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

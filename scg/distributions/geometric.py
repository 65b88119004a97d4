"""Geometric(probs=None, logits=None): the number of failures before the first success
in Bernoulli(p) trials, P(x = k) = (1 - p)^k p for k = 0, 1, 2, ... (torch's convention;
scipy.stats.geom counts trials, k + 1).

log p(k) = k log(1 - p) + log p; mean (1 - p) / p, variance (1 - p) / p^2,
entropy H_Bernoulli(p) / p.
"""

import numpy as np

from .. import ops
from . import constraints
from ..tensor import Tensor
from .bernoulli import Bernoulli
from .distribution import (
    BaseParams, Distribution, broadcast, check, follows_value_dtype, is_count, outside_is_impossible, p_log_q,
)
from .kl import register_kl, weighted_log_ratio


class Geometric(BaseParams, Distribution):
    """Failures before the first success, success probability ``probs`` in (0, 1] or
    ``logits`` (exactly one). No pathwise sample; samples are floats, as in torch, drawn
    by inversion in float64 (so beyond 2**63 at tiny p; inf past float32's range)."""

    support = constraints.nonnegative_integer
    arg_constraints = {"probs": constraints.left_open_interval(0.0, 1.0), "logits": constraints.real}

    def __init__(self, probs=None, logits=None, validate_args=None):
        self._base = Bernoulli(probs=probs, logits=logits, validate_args=validate_args)
        if self._base._given == "probs":
            p = self._base._param
            check("Geometric", "probs", p, p.data > 0, "in (0, 1]")
        else:
            l = self._base._param
            check("Geometric", "logits", l, l.data > -np.inf, "greater than -inf")
        self._untyped = self._base._untyped
        super().__init__(self._base.batch_shape, (), self._base.dtype, validate_args)

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        # Inversion, floor(E / -log(1 - p)) with E ~ Exp(1), in float64: numpy's geometric
        # returns int64 and sat at 2**63 in 92% of draws at p = 1e-20 (mean 1e20). log(1 - p)
        # comes from the Bernoulli's (log p, log q), exact for tiny p and for logits.
        _, log_q = self._base._log_p()
        log_q = np.broadcast_to(log_q.data, self.batch_shape).astype(np.float64)
        e = self._rng(rng).standard_exponential(shape)
        with np.errstate(divide="ignore"):  # p = 1: log q = -inf, every draw 0
            k = np.floor(e / -log_q)
        return Tensor(k.astype(self.dtype))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, is_count(x))
        k = ops.where(inside, x, 0)
        log_p, log_q = self._base._log_p()
        return outside_is_impossible(inside, p_log_q(k, log_q) + log_p)

    def entropy(self):
        return broadcast(self._base.entropy() / self.probs, self.batch_shape)

    @property
    def mean(self):
        return broadcast(self._q() / self.probs, self.batch_shape)

    @property
    def variance(self):
        p = self.probs
        return broadcast(self._q() / (p * p), self.batch_shape)

    @property
    def mode(self):
        """0: no failure before the first success is always the most likely count."""
        return broadcast(0 * self.probs, self.batch_shape)

    def _q(self):
        """1 - p; from logits as exp(log q), which 1 / p - 1 would round away for p near 1."""
        return ops.exp(self._base._log_p()[1]) if self._base._given == "logits" else 1 - self.probs


@register_kl(Geometric, Geometric)
def _kl_geometric_geometric(p, q):
    # E_p[k] (log(1 - p) - log(1 - q)) + log p - log q, with E_p[k] = 1/p - 1.
    (lp1, lp0), (lq1, lq0) = p._base._log_p(), q._base._log_p()
    return weighted_log_ratio(1 / p.probs - 1, lp0, lq0) + lp1 - lq1

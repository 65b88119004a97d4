"""Geometric(probs=None, logits=None): the number of failures before the first success
in Bernoulli(p) trials, P(x = k) = (1 - p)^k p for k = 0, 1, 2, ... (torch's convention;
scipy.stats.geom counts trials, k + 1).

log p(k) = k log(1 - p) + log p; mean (1 - p) / p, variance (1 - p) / p^2,
entropy H_Bernoulli(p) / p.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .bernoulli import Bernoulli
from .distribution import (
    BaseParams, Distribution, broadcast, check, follows_value_dtype, is_count, outside_is_impossible, p_log_q,
)
from .kl import register_kl, weighted_log_ratio


class Geometric(BaseParams, Distribution):
    """Failures before the first success, success probability ``probs`` in (0, 1] or
    ``logits`` (exactly one). No pathwise sample; samples are floats, as in torch."""

    support = "the non-negative integers"

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
        p = np.broadcast_to(self.probs.data, self.batch_shape).astype(np.float64)
        return Tensor((self._rng(rng).geometric(p, size=shape) - 1).astype(self.dtype))

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
        return broadcast(1 / self.probs - 1, self.batch_shape)

    @property
    def variance(self):
        p = self.probs
        return broadcast((1 / p - 1) / p, self.batch_shape)


@register_kl(Geometric, Geometric)
def _kl_geometric_geometric(p, q):
    # E_p[k] (log(1 - p) - log(1 - q)) + log p - log q, with E_p[k] = 1/p - 1.
    (lp1, lp0), (lq1, lq0) = p._base._log_p(), q._base._log_p()
    return weighted_log_ratio(1 / p.probs - 1, lp0, lq0) + lp1 - lq1

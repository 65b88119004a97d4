"""Poisson(rate): P(x = k) = rate^k e^(-rate) / k! for k = 0, 1, 2, ...

log p(k) = k log rate - rate - lgamma(k + 1); mean and variance are both ``rate``.
Like torch.distributions there is no closed-form entropy.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .distribution import (
    Distribution, broadcast, check, follows_value_dtype, is_count, outside_is_impossible, params, untyped,
)
from .kl import register_kl, weighted_log_ratio


class Poisson(Distribution):
    """Counts with mean ``rate >= 0``. No pathwise sample (use a score-function
    estimator); samples are floats in the parameter's dtype, as in torch."""

    support = "the non-negative integers"

    def __init__(self, rate, validate_args=None):
        (self.rate,), shape, dtype = params("Poisson", rate=rate)
        self._untyped = untyped(rate=rate)
        check("Poisson", "rate", self.rate, self.rate.data >= 0, "non-negative")
        check("Poisson", "rate", self.rate, np.isfinite(self.rate.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        rate = np.broadcast_to(self.rate.data, self.batch_shape).astype(np.float64)
        return Tensor(self._rng(rng).poisson(rate, size=shape).astype(self.dtype))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, is_count(x))
        k = ops.where(inside, x, 0)
        return outside_is_impossible(inside, ops.xlogy(k, self.rate) - self.rate - ops.lgamma(k + 1))

    @property
    def mean(self):
        return broadcast(self.rate, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.rate, self.batch_shape)


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(p, q):
    # sum_k p(k) log(p(k) / q(k)) = r_p log(r_p / r_q) - (r_p - r_q); 0 log 0 = 0.
    return weighted_log_ratio(p.rate, ops.log(p.rate), ops.log(q.rate)) - (p.rate - q.rate)

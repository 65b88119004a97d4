"""Poisson(rate): P(x = k) = rate^k e^(-rate) / k! for k = 0, 1, 2, ...

log p(k) = k log rate - rate - lgamma(k + 1), evaluated as -deviance(k, rate) minus the
Stirling remainder of log k! (``stable.py``), accurate to float64 rounding at any rate;
mean and variance are both ``rate``. numpy's sampler stops at rate ~9.2e18 (int64):
above NORMAL_RATE the draws are round(rate + sqrt(rate) N(0, 1)), off from Poisson by
its skewness 1/sqrt(rate) < 1e-9, far below the float64 spacing of the values there.
Like torch.distributions there is no closed-form entropy.
"""

import numpy as np

from .. import ops
from . import constraints
from ..tensor import Tensor
from .distribution import (
    Distribution, broadcast, check, follows_value_dtype, is_count, outside_is_impossible, params, untyped,
)
from .bernoulli import Bernoulli
from .binomial import Binomial
from .kl import infinite, register_kl, weighted_log_ratio
from .stable import deviance, log_factorial_rest

NORMAL_RATE = 1e18


class Poisson(Distribution):
    """Counts with mean ``rate >= 0``. No pathwise sample (use a score-function
    estimator); samples are floats in the parameter's dtype, as in torch."""

    support = constraints.nonnegative_integer
    arg_constraints = {"rate": constraints.nonnegative}

    def __init__(self, rate, validate_args=None):
        (self.rate,), shape, dtype = params("Poisson", rate=rate)
        self._untyped = untyped(rate=rate)
        check("Poisson", "rate", self.rate, self.rate.data >= 0, "non-negative")
        check("Poisson", "rate", self.rate, np.isfinite(self.rate.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        rate = np.broadcast_to(self.rate.data, self.batch_shape).astype(np.float64)
        rng = self._rng(rng)
        huge = rate > NORMAL_RATE
        x = rng.poisson(np.where(huge, 0.0, rate), size=shape).astype(np.float64)
        if huge.any():  # numpy refuses rates past int64 (see the module docstring)
            normal = np.round(rate + np.sqrt(rate) * rng.standard_normal(shape))
            x = np.where(huge, normal, x)
        return Tensor(x.astype(self.dtype))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, is_count(x))
        k = ops.where(inside, x, 0)
        # k log r - r - lgamma(k + 1) loses every digit when k and r are large (-16.0
        # instead of -18.19 at k = r = 1e15): Loader's saddle-point form keeps them.
        return outside_is_impossible(inside, -deviance(k, self.rate) - log_factorial_rest(k))

    @property
    def mean(self):
        return broadcast(self.rate, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.rate, self.batch_shape)

    @property
    def mode(self):
        """floor(rate) (the larger of two tied modes at an integer rate, as torch)."""
        return broadcast(ops.floor(self.rate), self.batch_shape)


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(p, q):
    # sum_k p(k) log(p(k) / q(k)) = r_p log(r_p / r_q) - (r_p - r_q); 0 log 0 = 0.
    return weighted_log_ratio(p.rate, ops.log(p.rate), ops.log(q.rate)) - (p.rate - q.rate)


@register_kl(Bernoulli, Poisson)
def _kl_bernoulli_poisson(p, q):
    # -H(p) - E_p[k log r - r - log k!], and log k! = 0 for k in {0, 1}
    return -p.entropy() - p.probs * ops.log(q.rate) + q.rate


@register_kl(Poisson, Bernoulli)
@register_kl(Poisson, Binomial)
def _kl_poisson_bounded(p, q):
    return infinite(p, q)  # a Poisson reaches every count, a Binomial only 0..n

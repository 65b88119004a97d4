"""InverseGamma(concentration, rate): x = 1 / G with G ~ Gamma(concentration, rate).

Density b^a x^(-a-1) e^(-b/x) / Gamma(a) for x > 0 (a = concentration, b = rate).
Mean b / (a - 1) for a > 1 (else inf), variance b^2 / ((a - 1)^2 (a - 2)) for a > 2 (else
inf), mode b / (a + 1), entropy a + log b + lgamma(a) - (1 + a) psi(a), and
cdf F(x) = Q(a, b/x) = 1 - P(a, b/x), P the regularized lower incomplete gamma function.

``rsample``: x = b exp(-log G1), G1 ~ Gamma(a, 1) drawn in log space and implicitly
reparameterized (:mod:`~scg.distributions.gamma`), so differentiable in a and b to any order.
As torch, there is no ``icdf``.
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, clamp_keeping_gradient, follows_value_dtype, outside_is_impossible,
    params, untyped,
)
from .gamma import gammaincc, rsample_log_standard_gamma


class InverseGamma(Distribution):
    """Inverse gamma with shape ``concentration`` (a > 0) and ``rate`` (b > 0): 1/x ~ Gamma(a, b)."""

    has_rsample = True
    support = constraints.positive
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}

    def __init__(self, concentration, rate, validate_args=None):
        (self.concentration, self.rate), shape, dtype = params(
            "InverseGamma", concentration=concentration, rate=rate
        )
        self._untyped = untyped(concentration=concentration, rate=rate)
        check_positive("InverseGamma", "concentration", self.concentration)
        check_positive("InverseGamma", "rate", self.rate)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        log_g = rsample_log_standard_gamma(broadcast(self.concentration, self.batch_shape), shape, self._rng(rng))
        info = np.finfo(log_g.dtype)
        # b / G overflows for tiny G (small a puts mass there): such draws are kept at the largest
        # float (and underflows at the smallest normal one), with the gradient of b / G.
        log_x = clamp_keeping_gradient(ops.log(self.rate) - log_g, high=np.log(info.max))
        return clamp_keeping_gradient(ops.exp(log_x), low=info.tiny)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x > 0)
        # x = inf: the density is 0 (-(a+1) log x = -inf there, with -b/x = 0: no NaN).
        safe_x = x if inside.data.all() else ops.where(inside, x, 1.0)
        a, b = self.concentration, self.rate
        lp = ops.xlogy(a, b) - ops.lgamma(a) - (a + 1) * ops.log(safe_x) - b / safe_x
        return outside_is_impossible(inside, lp)

    @follows_value_dtype
    def cdf(self, value):
        """P(X <= value) = Q(a, b / value) = 1 - P(a, b / value); 0 for value <= 0."""
        x, _ = self._cdf_value(value)  # refused outside the support under validation
        pos = ops.greater(x, 0)
        safe_x = ops.where(pos, x, 1.0)
        q = gammaincc(self.concentration, self.rate / safe_x)
        return ops.where(pos, q, 0.0)

    def entropy(self):
        a, b = self.concentration, self.rate
        return broadcast(a + ops.log(b) + ops.lgamma(a) - (1 + a) * ops.digamma(a), self.batch_shape)

    @property
    def mean(self):
        a, b = self.concentration, self.rate
        finite = ops.greater(a, 1)
        return broadcast(ops.where(finite, b / (ops.where(finite, a, 2.0) - 1), np.inf), self.batch_shape)

    @property
    def variance(self):
        a, b = self.concentration, self.rate
        finite = ops.greater(a, 2)
        a_ = ops.where(finite, a, 3.0)
        return broadcast(ops.where(finite, b * b / ((a_ - 1) * (a_ - 1) * (a_ - 2)), np.inf), self.batch_shape)

    @property
    def mode(self):
        return broadcast(self.rate / (self.concentration + 1), self.batch_shape)

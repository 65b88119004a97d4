"""Weibull(scale, concentration): with t = x / scale and k = concentration, density
(k / scale) t^(k-1) e^(-t^k) for x > 0; cdf 1 - e^(-t^k), icdf scale (-log(1 - p))^(1/k).

Entropy gamma (1 - 1/k) + log(scale / k) + 1 (gamma: Euler's constant), mean
scale Gamma(1 + 1/k), variance scale^2 (Gamma(1 + 2/k) - Gamma(1 + 1/k)^2), mode
scale ((k - 1) / k)^(1/k) for k > 1 and 0 otherwise. ``rsample``: scale E^(1/k) with
E ~ Exponential(1), so dx/dscale = x / scale and dx/dk = -x log(E) / k^2.
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, clamp_keeping_gradient, follows_value_dtype, outside_is_impossible,
    params, untyped,
)

EULER = float(np.euler_gamma)


class Weibull(Distribution):
    """Weibull with ``scale > 0`` and shape ``concentration > 0`` (k = 1: Exponential(1 / scale))."""

    has_rsample = True
    support = constraints.positive
    arg_constraints = {"scale": constraints.positive, "concentration": constraints.positive}

    def __init__(self, scale, concentration, validate_args=None):
        (self.scale, self.concentration), shape, dtype = params("Weibull", scale=scale, concentration=concentration)
        self._untyped = untyped(scale=scale, concentration=concentration)
        check_positive("Weibull", "scale", self.scale)
        check_positive("Weibull", "concentration", self.concentration)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        # log E in float64 (a constant for differentiation); E^(1/k) = exp(log E / k).
        log_e = np.log(self._rng(rng).standard_exponential(self._extended_shape(sample_shape)))
        x = self.scale * ops.exp(log_e.astype(self.dtype) / self.concentration)
        # Small k sends E^(1/k) below the smallest float (float32, k = 0.05: 1% of draws),
        # where the density is not defined: raise those to it, keeping the gradient.
        return clamp_keeping_gradient(x, low=np.finfo(self.dtype).tiny)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x > 0)
        finite = inside & (x < np.inf)  # the density is 0 at +inf (t^(k-1) e^(-t^k) would be NaN)
        k = self.concentration
        log_t = ops.log(ops.where(finite, x, 1)) - ops.log(self.scale)
        lp = ops.log(k) - ops.log(self.scale) + (k - 1) * log_t - ops.exp(k * log_t)
        return outside_is_impossible(finite, lp)

    def cdf(self, value):
        x, inside = self._cdf_value(value)
        t = ops.where(inside, x, 1) / self.scale
        return ops.where(inside, -ops.expm1(-(t**self.concentration)), 0)

    def icdf(self, value):
        return self.scale * (-ops.log1p(-self._level(value))) ** (1 / self.concentration)

    def entropy(self):
        k = self.concentration
        return broadcast(EULER * (1 - 1 / k) + ops.log(self.scale / k) + 1, self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.scale * ops.exp(ops.lgamma(1 + 1 / self.concentration)), self.batch_shape)

    @property
    def mode(self):
        k = self.concentration
        peaked = ops.greater(k, 1)  # k <= 1: the density decreases from x = 0
        ks = ops.where(peaked, k, 2)
        return broadcast(ops.where(peaked, self.scale * ((ks - 1) / ks) ** (1 / ks), 0), self.batch_shape)

    @property
    def variance(self):
        # scale^2 Gamma(1 + 1/k)^2 (Gamma(1 + 2/k) / Gamma(1 + 1/k)^2 - 1), the ratio's excess by expm1
        k = self.concentration
        l1, l2 = ops.lgamma(1 + 1 / k), ops.lgamma(1 + 2 / k)
        return broadcast(self.scale * self.scale * ops.exp(2 * l1) * ops.expm1(l2 - 2 * l1), self.batch_shape)

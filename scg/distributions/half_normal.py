"""HalfNormal(scale): |x| for x ~ Normal(0, scale); density sqrt(2/pi) / scale
exp(-y^2 / (2 scale^2)) for y >= 0.

Entropy log(scale sqrt(pi e / 2)), mean scale sqrt(2/pi), variance scale^2 (1 - 2/pi).
``rsample``: scale * |eps| with eps ~ N(0, 1), so dy/dscale = y / scale.
"""

import math

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, follows_value_dtype, outside_is_impossible, params, untyped,
)
from .kl import register_kl

HALF_LOG_PI_OVER_2 = 0.5 * math.log(math.pi / 2)
SQRT_2 = math.sqrt(2.0)


class HalfNormal(Distribution):
    """Half-normal with ``scale > 0``: the absolute value of a Normal(0, scale)."""

    has_rsample = True
    support = constraints.nonnegative.described("y >= 0")
    arg_constraints = {"scale": constraints.positive}

    def __init__(self, scale, validate_args=None):
        (self.scale,), shape, dtype = params("HalfNormal", scale=scale)
        self._untyped = untyped(scale=scale)
        check_positive("HalfNormal", "scale", self.scale)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        eps = self._rng(rng).standard_normal(self._extended_shape(sample_shape), dtype=self.dtype)
        return self.scale * np.abs(eps)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x >= 0)
        z = ops.where(inside, x, 0) / self.scale
        lp = -0.5 * z * z - ops.log(self.scale) - HALF_LOG_PI_OVER_2
        return outside_is_impossible(inside, lp)

    def entropy(self):
        return broadcast(0.5 + HALF_LOG_PI_OVER_2 + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.scale * math.sqrt(2 / math.pi), self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.scale * self.scale * (1 - 2 / math.pi), self.batch_shape)

    @property
    def mode(self):
        return broadcast(0 * self.scale, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """erf(y / (scale sqrt 2)) for y >= 0, 0 below."""
        x, inside = self._cdf_value(value)
        return ops.where(inside, ops.erf(ops.where(inside, x, 0) / (self.scale * SQRT_2)), 0)

    @follows_value_dtype
    def icdf(self, value):
        """scale sqrt(2) erfinv(p)."""
        return self.scale * SQRT_2 * ops.erfinv(self._level(value))

@register_kl(HalfNormal, HalfNormal)
def _kl_halfnormal_halfnormal(p, q):
    # as Normal(0, s_p) against Normal(0, s_q), both folded the same way: (r^2 - 1)/2 - log r, r = s_p/s_q
    r = p.scale / q.scale
    return 0.5 * (r * r - 1) - ops.log(r)

"""HalfCauchy(scale): |x| for x ~ Cauchy(0, scale); density 2 / (pi scale (1 + (y / scale)^2))
for y >= 0; cdf (2 / pi) arctan(y / scale), icdf scale tan(pi p / 2).

Entropy log(2 pi scale); mean and variance infinite (as torch.distributions says), mode 0.
``rsample``: scale * |eps| with eps a standard Cauchy draw, so dy/dscale = y / scale.
"""

import math

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, follows_value_dtype, outside_is_impossible, params, untyped,
)
from .stable import log1p_square

LOG_2_OVER_PI = math.log(2 / math.pi)


class HalfCauchy(Distribution):
    """Half-Cauchy with ``scale > 0``: the absolute value of a Cauchy(0, scale)."""

    has_rsample = True
    support = constraints.nonnegative.described("y >= 0")
    arg_constraints = {"scale": constraints.positive}

    def __init__(self, scale, validate_args=None):
        (self.scale,), shape, dtype = params("HalfCauchy", scale=scale)
        self._untyped = untyped(scale=scale)
        check_positive("HalfCauchy", "scale", self.scale)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        eps = self._rng(rng).standard_cauchy(self._extended_shape(sample_shape)).astype(self.dtype)
        return self.scale * np.abs(eps)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x >= 0)
        z = ops.where(inside, x, 0) / self.scale
        return outside_is_impossible(inside, LOG_2_OVER_PI - ops.log(self.scale) - log1p_square(z))

    def cdf(self, value):
        x, inside = self._cdf_value(value)
        return ops.where(inside, (2 / math.pi) * ops.arctan(ops.where(inside, x, 0) / self.scale), 0)

    def icdf(self, value):
        return self.scale * ops.tan((math.pi / 2) * self._level(value))

    def entropy(self):
        return broadcast(math.log(2 * math.pi) + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.scale * np.inf, self.batch_shape)

    @property
    def mode(self):
        return broadcast(self.scale * 0, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.scale * np.inf, self.batch_shape)

"""Normal(loc, scale): density exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))."""

import math

import numpy as np

from .. import ops
from .distribution import Distribution, broadcast, check, params, untyped

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(Distribution):
    """Gaussian with mean ``loc`` and standard deviation ``scale > 0`` (broadcast together).

    ``rsample``: ``loc + scale * eps`` with ``eps ~ N(0, 1)`` (location-scale).
    """

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        (self.loc, self.scale), shape, dtype = params("Normal", loc=loc, scale=scale)
        self._untyped = untyped(loc=loc, scale=scale)
        check("Normal", "scale", self.scale, self.scale.data > 0, "positive")
        check("Normal", "scale", self.scale, np.isfinite(self.scale.data), "finite")
        check("Normal", "loc", self.loc, abs(self.loc.data) < float("inf"), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        eps = self._rng(rng).standard_normal(self._extended_shape(sample_shape), dtype=self.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, value):
        follower = self._follow(value)  # Python-number parameters take the value's dtype
        if follower is not self:
            return follower.log_prob(value)
        x = self._value(value)
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - ops.log(self.scale) - HALF_LOG_2PI

    def entropy(self):
        return broadcast(0.5 + HALF_LOG_2PI + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.scale * self.scale, self.batch_shape)

    @property
    def stddev(self):
        return broadcast(self.scale, self.batch_shape)

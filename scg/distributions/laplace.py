"""Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale).

Entropy 1 + log(2 scale), mean loc, variance 2 scale^2. ``rsample``: loc + scale * eps
with eps a standard Laplace draw (location-scale), so dx/dloc = 1, dx/dscale = eps.
"""

import math

import numpy as np

from .. import ops
from .distribution import Distribution, broadcast, check, params, untyped

LOG_2 = math.log(2.0)


class Laplace(Distribution):
    """Laplace (double exponential) with location ``loc`` and ``scale > 0``."""

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        (self.loc, self.scale), shape, dtype = params("Laplace", loc=loc, scale=scale)
        self._untyped = untyped(loc=loc, scale=scale)
        check("Laplace", "scale", self.scale, self.scale.data > 0, "positive")
        check("Laplace", "scale", self.scale, np.isfinite(self.scale.data), "finite")
        check("Laplace", "loc", self.loc, np.isfinite(self.loc.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        eps = self._rng(rng).laplace(size=self._extended_shape(sample_shape)).astype(self.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, value):
        follower = self._follow(value)  # Python-number parameters take the value's dtype
        if follower is not self:
            return follower.log_prob(value)
        x = self._value(value)
        return -ops.abs(x - self.loc) / self.scale - ops.log(self.scale) - LOG_2

    def entropy(self):
        return broadcast(1 + LOG_2 + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc, self.batch_shape)

    @property
    def variance(self):
        return broadcast(2 * self.scale * self.scale, self.batch_shape)

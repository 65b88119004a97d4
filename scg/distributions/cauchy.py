"""Cauchy(loc, scale): density 1 / (pi scale (1 + ((x - loc) / scale)^2)).

Entropy log(4 pi scale). The mean is undefined (NaN) and the variance infinite, as in
torch.distributions. ``rsample``: loc + scale * eps with eps a standard Cauchy draw.
"""

import math

import numpy as np

from .. import ops
from .distribution import Distribution, broadcast, check, params, untyped

LOG_PI = math.log(math.pi)


class Cauchy(Distribution):
    """Cauchy (Lorentz) with location (median) ``loc`` and half-width ``scale > 0``."""

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        (self.loc, self.scale), shape, dtype = params("Cauchy", loc=loc, scale=scale)
        self._untyped = untyped(loc=loc, scale=scale)
        check("Cauchy", "scale", self.scale, self.scale.data > 0, "positive")
        check("Cauchy", "scale", self.scale, np.isfinite(self.scale.data), "finite")
        check("Cauchy", "loc", self.loc, np.isfinite(self.loc.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        eps = self._rng(rng).standard_cauchy(size=self._extended_shape(sample_shape)).astype(self.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, value):
        follower = self._follow(value)  # Python-number parameters take the value's dtype
        if follower is not self:
            return follower.log_prob(value)
        x = self._value(value)
        z = (x - self.loc) / self.scale
        return -ops.log1p(z * z) - ops.log(self.scale) - LOG_PI

    def entropy(self):
        return broadcast(math.log(4 * math.pi) + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc * np.nan, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.scale * np.inf, self.batch_shape)

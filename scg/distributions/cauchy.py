"""Cauchy(loc, scale): density 1 / (pi scale (1 + ((x - loc) / scale)^2)).

Entropy log(4 pi scale). The mean is undefined (NaN) and the variance infinite, as in
torch.distributions. ``rsample``: loc + scale * eps with eps a standard Cauchy draw.
"""

import math

import numpy as np

from .. import ops
from .distribution import LocationScale, broadcast, follows_value_dtype
from .kl import register_kl
from .stable import log1p_square

LOG_PI = math.log(math.pi)


class Cauchy(LocationScale):
    """Cauchy (Lorentz) with location (median) ``loc`` and half-width ``scale > 0``."""

    def _standard(self, rng, shape):
        return rng.standard_cauchy(size=shape).astype(self.dtype)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        z = (x - self.loc) / self.scale
        return -log1p_square(z) - ops.log(self.scale) - LOG_PI  # z^2 overflows beyond 1e154

    def entropy(self):
        return broadcast(math.log(4 * math.pi) + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc * np.nan, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.scale * np.inf, self.batch_shape)

    @property
    def mode(self):
        return broadcast(self.loc, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """1/2 + arctan(z) / pi, z = (x - loc) / scale; for z < 0 as arctan(-1/z) / pi, which
        keeps the digits of a small lower tail (1/2 + arctan(z)/pi cancels)."""
        x, _ = self._cdf_value(value)
        z = (x - self.loc) / self.scale
        below = z < 0
        tail = ops.arctan(-1 / ops.where(below, z, -1.0)) / math.pi
        return ops.where(below, tail, 0.5 + ops.arctan(ops.where(below, 0.0, z)) / math.pi)

    @follows_value_dtype
    def icdf(self, value):
        """loc + scale tan(pi (p - 1/2))."""
        return self.loc + self.scale * ops.tan(math.pi * (self._level(value) - 0.5))

@register_kl(Cauchy, Cauchy)
def _kl_cauchy_cauchy(p, q):
    # log(((s_p + s_q)^2 + (m_p - m_q)^2) / (4 s_p s_q))   (Chyzak & Nielsen 2019)
    total, gap = p.scale + q.scale, p.loc - q.loc
    return ops.log(total * total + gap * gap) - ops.log(4 * p.scale * q.scale)

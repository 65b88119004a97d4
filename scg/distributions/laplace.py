"""Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale).

Entropy 1 + log(2 scale), mean loc, variance 2 scale^2. ``rsample``: loc + scale * eps
with eps a standard Laplace draw (location-scale), so dx/dloc = 1, dx/dscale = eps.
"""

import math

from .. import ops
from .distribution import LocationScale, broadcast, follows_value_dtype
from .beta import Beta
from .exponential import Exponential
from .gamma import Gamma
from .kl import infinite, register_kl
from .normal import Normal, kl_to_normal
from .uniform import Uniform

LOG_2 = math.log(2.0)


class Laplace(LocationScale):
    """Laplace (double exponential) with location ``loc`` and ``scale > 0``."""

    def _standard(self, rng, shape):
        return rng.laplace(size=shape).astype(self.dtype)

    @follows_value_dtype
    def log_prob(self, value):
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

    @property
    def mode(self):
        return broadcast(self.loc, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """e^z / 2 for z = (x - loc) / scale < 0, 1 - e^-z / 2 otherwise."""
        x, _ = self._cdf_value(value)
        z = (x - self.loc) / self.scale
        below = z < 0
        half_tail = 0.5 * ops.exp(ops.where(below, z, -z))  # -|z|, differentiable at 0 (from the right)
        return ops.where(below, half_tail, 1 - half_tail)

    @follows_value_dtype
    def icdf(self, value):
        """loc + scale log(2p) for p < 1/2, loc - scale log(2 (1 - p)) otherwise."""
        p = self._level(value)
        below = p < 0.5
        t = ops.where(below, 2 * p, 2 * (1 - p))
        return self.loc + self.scale * ops.where(below, ops.log(t), -ops.log(t))


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p, q):
    # log(b2/b1) + |m1 - m2|/b2 + (b1/b2) exp(-|m1 - m2|/b1) - 1
    ratio = p.scale / q.scale
    gap = ops.abs(p.loc - q.loc)
    return -ops.log(ratio) + gap / q.scale + ratio * ops.exp(-gap / p.scale) - 1


register_kl(Laplace, Normal)(kl_to_normal)


@register_kl(Normal, Laplace)
def _kl_normal_laplace(p, q):
    # -H(p) + log(2 b) + E|x - m| / b, with x ~ N(mu, s), d = mu - m:
    # E|x - m| = s sqrt(2/pi) exp(-d^2 / (2 s^2)) + d erf(d / (s sqrt 2))   (folded normal mean)
    d, s = p.loc - q.loc, p.scale
    z = d / s
    folded = s * math.sqrt(2 / math.pi) * ops.exp(-0.5 * z * z) + d * ops.erf(z / math.sqrt(2))
    return -p.entropy() + LOG_2 + ops.log(q.scale) + folded / q.scale


@register_kl(Laplace, Uniform)
@register_kl(Laplace, Exponential)
@register_kl(Laplace, Gamma)
@register_kl(Laplace, Beta)
def _kl_laplace_bounded(p, q):
    return infinite(p, q)  # a Laplace puts mass on the whole line

"""Normal(loc, scale): density exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))."""

import math


from .. import ops
from .distribution import LocationScale, broadcast, follows_value_dtype
from .beta import Beta
from .exponential import Exponential
from .gamma import Gamma
from .kl import infinite, register_kl
from .uniform import Uniform

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(LocationScale):
    """Gaussian with mean ``loc`` and standard deviation ``scale > 0`` (broadcast together).

    ``rsample``: ``loc + scale * eps`` with ``eps ~ N(0, 1)`` (location-scale).
    """

    def _standard(self, rng, shape):
        return rng.standard_normal(shape, dtype=self.dtype)

    @follows_value_dtype
    def log_prob(self, value):
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

    @property
    def mode(self):
        return broadcast(self.loc, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """Phi((x - loc) / scale), with ndtr (accurate far into the lower tail)."""
        x, _ = self._cdf_value(value)
        return ops.ndtr((x - self.loc) / self.scale)

    @follows_value_dtype
    def icdf(self, value):
        """loc + scale Phi^-1(p)."""
        return self.loc + self.scale * ops.ndtri(self._level(value))


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    # log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2
    ratio = p.scale / q.scale
    diff = (p.loc - q.loc) / q.scale
    return 0.5 * (ratio * ratio + diff * diff - 1) - ops.log(ratio)


def kl_to_normal(p, q):
    """KL(p || Normal(m, s)) for any p with entropy, mean and variance:
    -H(p) + log s + log(2 pi)/2 + (Var p + (E p - m)^2) / (2 s^2)."""
    gap = p.mean - q.loc
    return -p.entropy() + ops.log(q.scale) + HALF_LOG_2PI + (p.variance + gap * gap) / (2 * q.scale * q.scale)


for _family in (Uniform, Exponential, Gamma, Beta):
    register_kl(_family, Normal)(kl_to_normal)


@register_kl(Normal, Uniform)
@register_kl(Normal, Exponential)
@register_kl(Normal, Gamma)
@register_kl(Normal, Beta)
def _kl_normal_bounded(p, q):
    return infinite(p, q)  # a Normal puts mass outside any bounded or half-bounded support

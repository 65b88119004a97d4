"""Gumbel(loc, scale): with z = (x - loc) / scale, density exp(-(z + e^(-z))) / scale on the
real line; cdf exp(-e^(-z)), icdf loc - scale log(-log p).

Entropy log(scale) + gamma + 1 (gamma: Euler's constant), mean loc + gamma scale, variance
(pi scale)^2 / 6, mode loc. ``rsample``: loc + scale * eps with eps a standard Gumbel draw.

KL divergences use, for a standard Gumbel z, E[z] = gamma and E[e^(-t z)] = Gamma(1 + t).
Against Gumbel, p = Gumbel(m1, b1), q = Gumbel(m2, b2):

    KL = log(b2 / b1) + (m1 - m2) / b2 + gamma (b1 / b2 - 1) - 1 + e^((m2 - m1) / b2) Gamma(1 + b1 / b2);

with -log q(x) = log b + (x - m) / b + e^(-(x - m) / b), any p with a Laplace transform in
closed form (Normal, Exponential, Gamma, Uniform) has KL(p || Gumbel) = -H(p) + log b +
(E_p[x] - m) / b + e^(m / b) E_p[e^(-x / b)]. KL(Gumbel || q) is +inf where q's support is
bounded (Uniform, Exponential, Gamma, Beta); KL(Gumbel || Normal) is -H + the Normal's
quadratic at the Gumbel's first two moments.
"""

import math

import numpy as np

from .. import ops
from ..tensor import Tensor
from .beta import Beta
from .distribution import LocationScale, broadcast, follows_value_dtype
from .exponential import Exponential
from .gamma import Gamma
from .kl import register_kl
from .normal import Normal
from .uniform import Uniform

EULER = float(np.euler_gamma)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Gumbel(LocationScale):
    """Gumbel (type I extreme value, of maxima) with location ``loc`` and ``scale > 0``."""

    def _standard(self, rng, shape):
        return rng.gumbel(size=shape).astype(self.dtype)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        z = (x - self.loc) / self.scale
        # e^(-z) overflows below z = -log(max float): the density is 0 there (and at -inf,
        # where z + e^(-z) would be -inf + inf = NaN).
        far = ops.less(z, -math.log(np.finfo(z.dtype).max))
        zs = ops.where(far, 0, z)
        return ops.where(far, -np.inf, -(zs + ops.exp(-zs)) - ops.log(self.scale))

    def cdf(self, value):
        x, _ = self._cdf_value(value)  # NaN refused under validation, named as cdf
        z = (x - self.loc) / self.scale
        return ops.exp(-ops.exp(-z))

    def icdf(self, value):
        return self.loc - self.scale * ops.log(-ops.log(self._level(value)))

    def entropy(self):
        return broadcast(ops.log(self.scale) + (EULER + 1), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc + EULER * self.scale, self.batch_shape)

    @property
    def mode(self):
        return broadcast(self.loc, self.batch_shape)

    @property
    def variance(self):
        return broadcast((math.pi**2 / 6) * self.scale * self.scale, self.batch_shape)


@register_kl(Gumbel, Gumbel)
def _kl_gumbel_gumbel(p, q):
    t = p.scale / q.scale
    return (
        ops.log(q.scale) - ops.log(p.scale) + (p.loc - q.loc) / q.scale + EULER * (t - 1) - 1
        + ops.exp((q.loc - p.loc) / q.scale + ops.lgamma(1 + t))
    )


def _to_gumbel(neg_entropy, mean, log_laplace, q):
    """-H(p) + log b + (E_p[x] - m) / b + e^(m / b) E_p[e^(-x / b)], given log E_p[e^(-x / b)]."""
    return neg_entropy + ops.log(q.scale) + (mean - q.loc) / q.scale + ops.exp(q.loc / q.scale + log_laplace)


@register_kl(Normal, Gumbel)
def _kl_normal_gumbel(p, q):
    s = p.scale / q.scale  # E[e^(-x / b)] = e^(-mu / b + s^2 / 2)
    return _to_gumbel(-p.entropy(), p.loc, -p.loc / q.scale + 0.5 * s * s, q)


@register_kl(Exponential, Gumbel)
def _kl_exponential_gumbel(p, q):
    rb = p.rate * q.scale  # E[e^(-x / b)] = rate / (rate + 1 / b) = 1 / (1 + 1 / (rate b))
    return _to_gumbel(-p.entropy(), 1 / p.rate, -ops.log1p(1 / rb), q)


@register_kl(Gamma, Gumbel)
def _kl_gamma_gumbel(p, q):
    rb = p.rate * q.scale  # E[e^(-x / b)] = (1 + 1 / (rate b))^(-a)
    return _to_gumbel(-p.entropy(), p.concentration / p.rate, -p.concentration * ops.log1p(1 / rb), q)


@register_kl(Uniform, Gumbel)
def _kl_uniform_gumbel(p, q):
    # E[e^(-x / b)] = b (e^(-low / b) - e^(-high / b)) / (high - low)
    #              = e^(-low / b) (b / w) (-expm1(-w / b)), w = high - low
    w = p.high - p.low
    log_laplace = -p.low / q.scale + ops.log(q.scale / w) + ops.log(-ops.expm1(-w / q.scale))
    return _to_gumbel(-ops.log(w), (p.low + p.high) / 2, log_laplace, q)


@register_kl(Gumbel, Normal)
def _kl_gumbel_normal(p, q):
    # E_p[(x - mu)^2] = Var_p + (E_p[x] - mu)^2
    gap = (p.mean - q.loc) / q.scale
    spread = p.scale / q.scale
    return -p.entropy() + ops.log(q.scale) + HALF_LOG_2PI + 0.5 * (gap * gap + (math.pi**2 / 6) * spread * spread)


def _kl_gumbel_bounded(p, q):
    """+inf: the Gumbel puts mass outside q's (bounded) support."""
    shape = np.broadcast_shapes(p.batch_shape, q.batch_shape)
    return Tensor(np.full(shape, np.inf, dtype=np.result_type(p.dtype, q.dtype)))


for _bounded in (Uniform, Exponential, Gamma, Beta):
    register_kl(Gumbel, _bounded)(_kl_gumbel_bounded)

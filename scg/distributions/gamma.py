"""Gamma(concentration, rate) and the implicitly reparameterized standard Gamma sample.

Density: b^a x^(a-1) e^(-b x) / Gamma(a) for x > 0.

Implicit reparameterization (Figurnov, Mohamed & Mnih 2018): a sample z of
Gamma(a, 1) with CDF F(z; a) = P(a, z) moves with a as
``dz/da = -(dF/da)(z; a) / p(z; a)``. With the series
``P(a, z) = sum_n exp((a + n) log z - z - lgamma(a + n + 1))`` this is

    dz/da = -sum_n exp((n + 1) log z + lgamma(a) - lgamma(a + n + 1)) * (log z - digamma(a + n + 1)),

free of the e^(-z) factors. It is written with differentiable operations, and
the primitive passes its own output ``z`` to it, so second and higher
derivatives through a Gamma sample are exact too.
"""

import numpy as np

from .. import ops
from ..autodiff import primitive, unbroadcast
from .distribution import Distribution, broadcast, check, params


def _series_terms(z):
    """Number of series terms that reach the float64 rounding level for every z."""
    zmax = float(np.max(z)) if z.size else 0.0
    return int(np.ceil(zmax + 10.0 * np.sqrt(zmax) + 30.0))


def gamma_sample_grad(alpha, z):
    """dz/dalpha for z ~ Gamma(alpha, 1), elementwise (alpha broadcasts to z's shape).

    Computed in float64 and returned in z's dtype; differentiable in alpha and z.
    """
    dtype = z.dtype
    a = ops.astype(broadcast(alpha, z.shape), np.float64)
    log_z = ops.log(ops.astype(z, np.float64))
    n = np.arange(_series_terms(z.data), dtype=np.float64)
    a_n = ops.expand_dims(a, -1) + (n + 1)  # a + n + 1, shape z.shape + (N,)
    log_z_ = ops.expand_dims(log_z, -1)
    log_w = (n + 1) * log_z_ + ops.expand_dims(ops.lgamma(a), -1) - ops.lgamma(a_n)
    terms = ops.exp(log_w) * (log_z_ - ops.digamma(a_n))
    return ops.astype(-ops.sum(terms, axis=-1), dtype)


standard_gamma = primitive(
    "standard_gamma",
    lambda alpha, sample: sample,
    lambda g, ans, alpha, sample: unbroadcast(g * gamma_sample_grad(alpha, ans), alpha.shape),
)
standard_gamma.__doc__ = """The given Gamma(alpha, 1) ``sample`` as a function of ``alpha``,
differentiable by implicit reparameterization."""


def rsample_standard_gamma(alpha, shape, rng):
    """A Gamma(alpha, 1) draw of ``shape`` (alpha broadcasts to it), differentiable in alpha.

    Draws below the smallest positive normal number are raised to it, so that
    log z stays finite (small alpha puts much mass there).
    """
    a = np.broadcast_to(alpha.data, shape)
    sample = rng.standard_gamma(a, size=shape).astype(alpha.dtype, copy=False)
    sample = np.maximum(sample, np.finfo(alpha.dtype).tiny)
    return standard_gamma(alpha, sample=sample)


class Gamma(Distribution):
    """Gamma with shape ``concentration`` (a > 0) and ``rate`` (b > 0): mean a/b.

    ``rsample`` is implicitly reparameterized (differentiable in both parameters,
    to any order).
    """

    has_rsample = True
    support = "x >= 0"

    def __init__(self, concentration, rate, validate_args=None):
        (self.concentration, self.rate), shape, dtype = params(
            "Gamma", concentration=concentration, rate=rate
        )
        check("Gamma", "concentration", self.concentration, self.concentration.data > 0, "positive")
        check("Gamma", "rate", self.rate, self.rate.data > 0, "positive")
        check("Gamma", "rate", self.rate, np.isfinite(self.rate.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        z = rsample_standard_gamma(broadcast(self.concentration, self.batch_shape), shape, self._rng(rng))
        return z / self.rate

    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x.data >= 0)
        safe_x = ops.where(inside, x, 1)
        a, b = self.concentration, self.rate
        lp = a * ops.log(b) + ops.xlogy(a - 1, safe_x) - b * safe_x - ops.lgamma(a)
        return ops.where(inside, lp, -np.inf)

    def entropy(self):
        a, b = self.concentration, self.rate
        return broadcast(a - ops.log(b) + ops.lgamma(a) + (1 - a) * ops.digamma(a), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.concentration / self.rate, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.concentration / (self.rate * self.rate), self.batch_shape)

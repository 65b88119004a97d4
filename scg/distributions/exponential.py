"""Exponential(rate): density b e^(-b x) for x >= 0.

Entropy 1 - log b, mean 1/b, variance 1/b^2. Reparameterized by the inverse
CDF: ``x = -log(1 - u) / b`` with ``u ~ Uniform[0, 1)``, so dx/db = -x/b.
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, follows_value_dtype, outside_is_impossible, params, untyped,
)
from .gamma import Gamma
from .kl import register_kl


class Exponential(Distribution):
    """Exponential with ``rate`` b > 0 (mean 1/b)."""

    has_rsample = True
    support = constraints.nonnegative
    arg_constraints = {"rate": constraints.positive}

    def __init__(self, rate, validate_args=None):
        (self.rate,), shape, dtype = params("Exponential", rate=rate)
        self._untyped = untyped(rate=rate)
        check_positive("Exponential", "rate", self.rate)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        u = self._rng(rng).random(self._extended_shape(sample_shape), dtype=self.dtype)
        return -np.log1p(-u) / self.rate  # u < 1, so every draw is finite

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x >= 0)
        lp = ops.log(self.rate) - self.rate * ops.where(inside, x, 0)
        return outside_is_impossible(inside, lp)

    def entropy(self):
        return broadcast(1 - ops.log(self.rate), self.batch_shape)

    @property
    def mean(self):
        return broadcast(1 / self.rate, self.batch_shape)

    @property
    def variance(self):
        return broadcast(1 / (self.rate * self.rate), self.batch_shape)

    @property
    def mode(self):
        return broadcast(0 * self.rate, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """1 - e^(-b x) for x >= 0 (as -expm1, exact for small b x), 0 below."""
        x, inside = self._cdf_value(value)
        return ops.where(inside, -ops.expm1(-self.rate * ops.where(inside, x, 0)), 0)

    @follows_value_dtype
    def icdf(self, value):
        """-log(1 - p) / b."""
        return -ops.log1p(-self._level(value)) / self.rate


@register_kl(Exponential, Exponential)
def _kl_exponential_exponential(p, q):
    # r - log r - 1 with r = b_q / b_p
    ratio = q.rate / p.rate
    return ratio - ops.log(ratio) - 1


EULER_GAMMA = 0.5772156649015329


def gamma_expected_log_density(q, mean, mean_log):
    """E_p[log q(x)] for q a Gamma(a, b) (rate b), from E_p[x] and E_p[log x]:
    a log b - lgamma(a) + (a - 1) E[log x] - b E[x]."""
    a, b = q.concentration, q.rate
    return a * ops.log(b) - ops.lgamma(a) + (a - 1) * mean_log - b * mean


@register_kl(Exponential, Gamma)
def _kl_exponential_gamma(p, q):
    # -H(p) - E_p[log q], E_p[x] = 1/r, E_p[log x] = -gamma_E - log r
    return -p.entropy() - gamma_expected_log_density(q, 1 / p.rate, -EULER_GAMMA - ops.log(p.rate))


@register_kl(Gamma, Exponential)
def _kl_gamma_exponential(p, q):
    # -H(p) - E_p[log r - r x], E_p[x] = a/b
    return -p.entropy() - ops.log(q.rate) + q.rate * p.concentration / p.rate

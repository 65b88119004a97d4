"""Kumaraswamy(concentration1, concentration0): density a b x^(a-1) (1 - x^a)^(b-1) on [0, 1].

With a = concentration1, b = concentration0: cdf F(x) = 1 - (1 - x^a)^b, inverse
F^-1(u) = (1 - (1 - u)^(1/b))^(1/a); moments E[x^n] = b B(1 + n/a, b); entropy
(1 - 1/b) + (1 - 1/a) H_b - log(a b), H_b = psi(b + 1) + Euler's gamma (the harmonic number);
mode ((a - 1) / (a b - 1))^(1/a) for a >= 1, b >= 1, not both 1 (NaN otherwise, as torch).

``rsample``: x = F^-1(u), u ~ Uniform(0, 1) (pathwise through the closed-form inverse cdf).
1 - x^a is computed as -expm1(a log x), and 1 - (1 - u)^(1/b) as -expm1(log1p(-u) / b), so
neither loses the digits of a small x^a or u.
"""

import numpy as np

from .. import ops
from .distribution import (
    Distribution, broadcast, check_positive, follows_value_dtype, keep_inside_unit_interval, outside_is_impossible,
    params, untyped,
)

EULER_GAMMA = 0.57721566490153286061


def _log_beta(x, y):
    return ops.lgamma(x) + ops.lgamma(y) - ops.lgamma(x + y)


class Kumaraswamy(Distribution):
    """Kumaraswamy with ``concentration1`` a > 0 and ``concentration0`` b > 0 (broadcast together)."""

    has_rsample = True
    support = "0 <= x <= 1"

    def __init__(self, concentration1, concentration0, validate_args=None):
        (self.concentration1, self.concentration0), shape, dtype = params(
            "Kumaraswamy", concentration1=concentration1, concentration0=concentration0
        )
        self._untyped = untyped(concentration1=concentration1, concentration0=concentration0)
        check_positive("Kumaraswamy", "concentration1", self.concentration1)
        check_positive("Kumaraswamy", "concentration0", self.concentration0)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        u = self._rng(rng).random(shape).astype(self.dtype)
        return keep_inside_unit_interval(self._icdf(u))

    def _icdf(self, u):
        a, b = self.concentration1, self.concentration0
        return ops.exp(ops.log(-ops.expm1(ops.log1p(-u) / b)) / a)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, (x >= 0) & (x <= 1))
        x = ops.where(inside, x, 0.5)
        a, b = self.concentration1, self.concentration0
        # xlogy: 0 log 0 = 0, so x = 0 (x = 1) is finite for a = 1 (b = 1), +inf below, -inf above.
        lp = ops.log(a) + ops.log(b) + ops.xlogy(a - 1, x) + ops.xlogy(b - 1, -ops.expm1(a * ops.log(x)))
        return outside_is_impossible(inside, lp)

    @follows_value_dtype
    def cdf(self, value):
        """F(x) = 1 - (1 - x^a)^b, clipped to [0, 1] outside the support."""
        x = ops.clip(self._value(value), 0, 1)
        a, b = self.concentration1, self.concentration0
        return -ops.expm1(b * ops.log(-ops.expm1(a * ops.log(x))))

    @follows_value_dtype
    def icdf(self, value):
        """F^-1(u) = (1 - (1 - u)^(1/b))^(1/a) for u in [0, 1]."""
        u = self._value(value)
        if self._validate and not ((u.data >= 0) & (u.data <= 1)).all():
            raise ValueError("Kumaraswamy.icdf: value must be a probability in [0, 1]")
        return self._icdf(u)

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        harmonic = ops.digamma(b + 1) + EULER_GAMMA
        return broadcast((1 - 1 / b) + (1 - 1 / a) * harmonic - ops.log(a) - ops.log(b), self.batch_shape)

    def _moment(self, n):
        a, b = self.concentration1, self.concentration0
        return ops.exp(ops.log(b) + _log_beta(1 + n / a, b))

    @property
    def mean(self):
        return broadcast(self._moment(1), self.batch_shape)

    @property
    def variance(self):
        m1 = self._moment(1)
        return broadcast(self._moment(2) - m1 * m1, self.batch_shape)

    @property
    def mode(self):
        a, b = self.concentration1, self.concentration0
        defined = ops.greater_equal(a, 1) & ops.greater_equal(b, 1) & ops.greater(a * b, 1)
        a_ = ops.where(defined, a, 2.0)
        b_ = ops.where(defined, b, 2.0)
        # log((a - 1) / (a b - 1)) / a; a = 1 < b gives log 0 = -inf and mode 0, as the density says.
        m = ops.exp((ops.log(a_ - 1) - ops.log(a_ * b_ - 1)) / a_)
        return broadcast(ops.where(defined, m, np.nan), self.batch_shape)

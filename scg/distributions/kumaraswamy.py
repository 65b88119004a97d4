"""Kumaraswamy(concentration1, concentration0): density a b x^(a-1) (1 - x^a)^(b-1) on [0, 1].

With a = concentration1, b = concentration0: cdf F(x) = 1 - (1 - x^a)^b, inverse
F^-1(u) = (1 - (1 - u)^(1/b))^(1/a); moments E[x^n] = b B(1 + n/a, b); entropy
(1 - 1/b) + (1 - 1/a) H_b - log(a b), H_b = psi(b + 1) + Euler's gamma (the harmonic number);
mode ((a - 1) / (a b - 1))^(1/a) for a >= 1, b >= 1, not both 1 (NaN otherwise, as torch).

``rsample``: x = F^-1(u), u ~ Uniform(0, 1) (pathwise through the closed-form inverse cdf).
log(1 - x^a) is log1p(-x^a) or log(-expm1(a log x)) (whichever keeps the digits), and
1 - (1 - u)^(1/b) is -expm1(log1p(-u) / b), so no digits of a small x^a, 1 - x^a or u are lost.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, follows_value_dtype, keep_inside_unit_interval, outside_is_impossible,
    params, untyped,
)

EULER_GAMMA = 0.57721566490153286061


def log1m_pow(a, x):
    """log(1 - x^a) for x in [0, 1]: log1p(-x^a) where x^a < 1/2 (a small x^a keeps its digits),
    log(-expm1(a log x)) above (1 - x^a keeps its digits near x = 1)."""
    a_log_x = a * ops.log(x)
    small = ops.less(a_log_x, -np.log(2.0))
    return ops.where(small, ops.log1p(-ops.exp(ops.where(small, a_log_x, -1.0))),
                     ops.log(-ops.expm1(ops.where(small, -1.0, a_log_x))))


def _log_beta(x, y):
    return ops.lgamma(x) + ops.lgamma(y) - ops.lgamma(x + y)


class Kumaraswamy(Distribution):
    """Kumaraswamy with ``concentration1`` a > 0 and ``concentration0`` b > 0 (broadcast together)."""

    has_rsample = True
    support = constraints.unit_interval
    arg_constraints = {"concentration1": constraints.positive, "concentration0": constraints.positive}

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
        u = Tensor(self._rng(rng).random(shape).astype(self.dtype))
        return keep_inside_unit_interval(self._icdf(u))

    def _icdf(self, u):
        a, b = self.concentration1, self.concentration0
        one = ops.equal(u, 1)  # log1p(-1) = -inf: F^-1(1) = 1, without numpy's warning
        log1m_u = ops.where(one, u.dtype.type(-np.inf), ops.log1p(-ops.where(one, 0.0, u)))
        return ops.exp(ops.log(-ops.expm1(log1m_u / b)) / a)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, (x >= 0) & (x <= 1))
        x = ops.where(inside, x, 0.5)
        a, b = self.concentration1, self.concentration0
        # xlogy: 0 log 0 = 0, so x = 0 is finite for a = 1, +inf below, -inf above (x = 1 and b alike).
        # At x = 1, (b - 1) log(1 - x^a) is xlogy's (b - 1) log 0: 0 for b = 1, else +-inf.
        one = ops.equal(x, 1)
        last = ops.where(one, ops.xlogy(b - 1, ops.astype(ops.where(one, 0.0, 1.0), x.dtype)), (b - 1) * log1m_pow(a, ops.where(one, 0.5, x)))
        lp = ops.log(a) + ops.log(b) + ops.xlogy(a - 1, x) + last
        return outside_is_impossible(inside, lp)

    @follows_value_dtype
    def cdf(self, value):
        """F(x) = 1 - (1 - x^a)^b, clipped to [0, 1] outside the support."""
        x, _ = self._cdf_value(value)  # refused outside the support under validation
        x = ops.clip(x, 0, 1)
        a, b = self.concentration1, self.concentration0
        return -ops.expm1(b * log1m_pow(a, x))

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

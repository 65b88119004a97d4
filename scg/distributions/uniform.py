"""Uniform(low, high): density 1 / (high - low) on [low, high), 0 elsewhere.

Entropy log(high - low), mean (low + high)/2, variance (high - low)^2 / 12.
Reparameterized by the inverse CDF: ``x = low + (high - low) u`` with
``u ~ Uniform[0, 1)``, so dx/dlow = 1 - u and dx/dhigh = u.
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check, clamp_keeping_gradient, follows_value_dtype, params, untyped,
)
from .beta import Beta
from .exponential import Exponential, gamma_expected_log_density
from .gamma import Gamma
from .kl import infinite, infinite_where, register_kl


class Uniform(Distribution):
    """Uniform on ``[low, high)`` with ``low < high`` elementwise (broadcast together)."""

    has_rsample = True
    support = constraints.half_open_interval(0.0, 1.0).described("low <= x < high")  # per instance below

    def __init__(self, low, high, validate_args=None):
        (self.low, self.high), shape, dtype = params("Uniform", low=low, high=high)
        self._untyped = untyped(low=low, high=high)
        check("Uniform", "low", self.low, np.isfinite(self.low.data), "finite")
        check("Uniform", "high", self.high, np.isfinite(self.high.data), "finite")
        ordered = self.low.data < self.high.data
        if not ordered.all():
            lo, hi = (np.broadcast_to(t.data, shape)[~ordered].flat[0] for t in (self.low, self.high))
            raise ValueError(
                f"Uniform: parameter 'low' must be less than parameter 'high' elementwise; "
                f"got low {lo!r} >= high {hi!r}"
            )
        self.support = constraints.half_open_interval(self.low.data, self.high.data).described("low <= x < high")
        self.arg_constraints = {"low": constraints.less_than(self.high.data), "high": constraints.greater_than(self.low.data)}
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        u = self._rng(rng).random(self._extended_shape(sample_shape), dtype=self.dtype)
        x = self.low + (self.high - self.low) * u
        # Rounding can land a draw with u close to 1 on ``high`` itself (in float32 about
        # once in 2^24 draws); move it just below by adding a constant, keeping its gradient.
        return clamp_keeping_gradient(x, high=np.nextafter(self.high.data, self.low.data))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, (x >= self.low) & (x < self.high))
        # Always through the (recorded) mask: the density is constant inside, so the mask is
        # the only way the result depends on x.
        return ops.where(inside, -ops.log(self.high - self.low), -np.inf)

    def entropy(self):
        return broadcast(ops.log(self.high - self.low), self.batch_shape)

    @property
    def mean(self):
        return broadcast((self.low + self.high) / 2, self.batch_shape)

    @property
    def variance(self):
        width = self.high - self.low
        return broadcast(width * width / 12, self.batch_shape)

    @property
    def mode(self):
        """NaN: every point of the support is equally likely (as torch)."""
        return broadcast(self.low * np.nan, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """(x - low) / (high - low), clipped to [0, 1]. Defined at x = high too (= 1): the
        check here is low <= x <= high."""
        x, _ = self._cdf_value(value, constraints.interval(self.low.data, self.high.data))
        return ops.clip((x - self.low) / (self.high - self.low), 0, 1)

    @follows_value_dtype
    def icdf(self, value):
        """low + p (high - low)."""
        return self.low + self._level(value) * (self.high - self.low)

def mean_log(low, high):
    """E[log x] for x ~ Uniform(low, high), 0 <= low < high: (h log h - l log l) / (h - l) - 1
    (0 log 0 = 0, so low = 0 is finite)."""
    return (ops.xlogy(high, high) - ops.xlogy(low, low)) / (high - low) - 1


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    # log((h_q - l_q) / (h_p - l_p)) when [l_p, h_p) lies inside [l_q, h_q), else +inf
    outside = (q.low > p.low) | (q.high < p.high)
    return infinite_where(outside, ops.log(q.high - q.low) - ops.log(p.high - p.low))


@register_kl(Uniform, Exponential)
def _kl_uniform_exponential(p, q):
    # -log(h - l) - log r + r (l + h) / 2, finite when l >= 0
    kl = -ops.log(p.high - p.low) - ops.log(q.rate) + q.rate * (p.low + p.high) / 2
    return infinite_where(p.low < 0, kl)


@register_kl(Uniform, Gamma)
def _kl_uniform_gamma(p, q):
    outside = p.low < 0
    low, high = ops.where(outside, 0, p.low), ops.where(outside, 1, p.high)  # safe where +inf
    kl = -ops.log(high - low) - gamma_expected_log_density(q, (low + high) / 2, mean_log(low, high))
    return infinite_where(outside, kl)


@register_kl(Uniform, Beta)
def _kl_uniform_beta(p, q):
    # -H(p) - E_p[(a - 1) log x + (b - 1) log(1 - x)] + log B(a, b), finite when [l, h) is in [0, 1]
    outside = (p.low < 0) | (p.high > 1)
    low, high = ops.where(outside, 0.25, p.low), ops.where(outside, 0.75, p.high)
    a, b = q.concentration1, q.concentration0
    cross = (a - 1) * mean_log(low, high) + (b - 1) * mean_log(1 - high, 1 - low) - q._log_beta()
    return infinite_where(outside, -ops.log(high - low) - cross)


@register_kl(Beta, Uniform)
def _kl_beta_uniform(p, q):
    return infinite_where((q.low > 0) | (q.high < 1), -p.entropy() + ops.log(q.high - q.low))


@register_kl(Gamma, Uniform)
@register_kl(Exponential, Uniform)
def _kl_unbounded_uniform(p, q):
    return infinite(p, q)  # p puts mass beyond any bound

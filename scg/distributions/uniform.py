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

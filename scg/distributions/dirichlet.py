"""Dirichlet(concentration): density prod_k x_k^(a_k - 1) / B(a) on the simplex
{x : x_k >= 0, sum_k x_k = 1}, with log B(a) = sum_k lgamma(a_k) - lgamma(a0), a0 = sum_k a_k.

Entropy log B(a) + (a0 - K) psi(a0) - sum_k (a_k - 1) psi(a_k), mean a / a0,
variance a_k (a0 - a_k) / (a0^2 (a0 + 1)).

``rsample``: x_k = G_k / sum_j G_j = softmax(log G)_k with G_k ~ Gamma(a_k, 1) drawn in
log space by :func:`~scg.distributions.gamma.rsample_log_standard_gamma` (so small
concentrations, whose Gammas underflow, still give the right ratios; the softmax
normalises with a log-sum-exp), implicitly reparameterized and differentiable to any order.
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, clamp_keeping_gradient, follows_value_dtype, log_beta,
    outside_is_impossible, params, sums_to_one, untyped,
)
from .gamma import rsample_log_standard_gamma
from .kl import register_kl
from .stable import lgamma_shift


def dirichlet_mode(a):
    """The mode of Dirichlet(a), a (..., K): (a_k - 1)^+ / sum_j (a_j - 1)^+, the maximum
    over the closed simplex (NaN when every a_k = 1, flat); when every a_k < 1 the density
    is unbounded at each vertex: the vertex of the largest a_k (the first of ties), as torch."""
    excess = ops.maximum(a - 1, 0)
    total = ops.sum(excess, axis=-1, keepdims=True)
    flat = total == 0  # (no 0/0: NaN there by choice, with finite gradients elsewhere)
    interior = ops.where(flat, np.nan, excess / ops.where(flat, 1.0, total))
    vertex = ops.astype(ops.first_max(a), a.dtype)
    all_below = ops.all(a < 1, axis=-1, keepdims=True)
    return ops.where(all_below, vertex, interior)


class Dirichlet(Distribution):
    """Dirichlet with ``concentration`` of shape ``batch_shape + (K,)``, every a_k > 0.

    ``event_shape`` is ``(K,)``: samples and values have K on their last axis.

    Accuracy: log_prob is good to float64 rounding while at most one concentration is
    large; with several above ~1e7 its terms ~a log a cancel (a = (1e15, 1e15, 1e15) gives
    26.0 for 35.28). Beta has the fix for K = 2 (Loader's form); not yet ported here.
    """

    has_rsample = True
    support = constraints.simplex
    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}

    def __init__(self, concentration, validate_args=None):
        (self.concentration,), shape, dtype = params("Dirichlet", concentration=concentration)
        self._untyped = untyped(concentration=concentration)
        if len(shape) == 0 or shape[-1] == 0:
            raise ValueError(
                f"Dirichlet: parameter 'concentration' needs a last axis of K >= 1 categories; "
                f"got shape {shape}"
            )
        a = self.concentration
        check_positive("Dirichlet", "concentration", a)
        super().__init__(shape[:-1], shape[-1:], dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        log_g = rsample_log_standard_gamma(self.concentration, shape, self._rng(rng))
        # Shift by the (constant) largest log G first: log G ~ -1000 carries an absolute
        # rounding of 1e-13, which a log-sum-exp of the unshifted values passes on to x.
        x = ops.softmax(log_g - np.max(log_g.data, axis=-1, keepdims=True), axis=-1)
        # A component far below the largest rounds to 0: keep
        # every component >= tiny by adding a constant, so its gradient is unchanged.
        return clamp_keeping_gradient(x, low=np.finfo(self.dtype).tiny)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        k = self.event_shape[0]
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(
                f"Dirichlet.log_prob: value must have K = {k} on its last axis; got shape {x.shape}"
            )
        inside = self._support(x, ops.all(x >= 0, axis=-1) & sums_to_one(x, self.dtype))
        if not inside.data.all():
            x = ops.where(ops.expand_dims(inside, -1), x, 1.0 / k)
        terms = ops.xlogy(self.concentration - 1, x)
        # x_k = 0 gives +inf for a_k < 1 and -inf for a_k > 1; where both meet, the
        # product x^(a-1) has a factor 0 * inf, taken as 0 (density 0), never NaN.
        zero_density = ops.any(terms == -np.inf, axis=-1)
        if zero_density.data.any():
            terms = ops.where(ops.expand_dims(zero_density, -1), 0, terms)
        lp = ops.sum(terms, axis=-1) - self._stable_log_beta()
        return outside_is_impossible(inside & ~zero_density, lp)

    def _stable_log_beta(self):
        """log B(a) with the largest a_k's pair lgamma(A) - lgamma(a_k) taken as one stable
        difference (lgamma_shift): a single large concentration no longer cancels (1e-8 off
        at a = (1e8, 1)). Several large ones still do: see the class docstring."""
        a = self.concentration
        pivot = ops.first_max(a)  # recorded: a may depend on a sample
        top = ops.sum(ops.where(pivot, a, 0.0), axis=-1)
        others = ops.where(pivot, 1.0, a)
        rest = ops.sum(ops.where(pivot, 0.0, a), axis=-1)
        return ops.sum(ops.where(pivot, 0.0, ops.lgamma(others)), axis=-1) - lgamma_shift(top, rest)

    def _log_beta(self):
        """log B(a), shape concentration.shape[:-1]."""
        return log_beta(self.concentration)

    def entropy(self):
        a = self.concentration
        k = self.event_shape[0]
        a0 = ops.sum(a, axis=-1)
        h = self._log_beta() + (a0 - k) * ops.digamma(a0) - ops.sum((a - 1) * ops.digamma(a), axis=-1)
        return broadcast(h, self.batch_shape)

    @property
    def mean(self):
        a = self.concentration
        return broadcast(a / ops.sum(a, axis=-1, keepdims=True), self.batch_shape + self.event_shape)

    @property
    def mode(self):
        return broadcast(dirichlet_mode(self.concentration), self.batch_shape + self.event_shape)

    @property
    def variance(self):
        a = self.concentration
        a0 = ops.sum(a, axis=-1, keepdims=True)
        return broadcast(a * (a0 - a) / (a0 * a0 * (a0 + 1)), self.batch_shape + self.event_shape)


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p, q):
    # log B(b) - log B(a) + sum_k (a_k - b_k) (psi(a_k) - psi(a0))
    a, b = p.concentration, q.concentration
    a0 = ops.sum(a, axis=-1)
    psi_gap = ops.digamma(a) - ops.expand_dims(ops.digamma(a0), -1)
    return q._log_beta() - p._log_beta() + ops.sum((a - b) * psi_gap, axis=-1)

"""Multinomial(total_count=1, probs=None, logits=None): counts x_1..x_K of n draws from
a Categorical(p), P(x) = n! / prod_i x_i! prod_i p_i^(x_i) where sum_i x_i = n.

log p(x) = lgamma(n + 1) - sum_i lgamma(x_i + 1) + sum_i x_i log p_i, evaluated in Loader's
saddle-point form (``stable.py``), accurate at any n. total_count above 2**53 is refused
(``ValueError`` naming it): float64 counts there skip integers, so a draw rounded to floats
could fall outside the support its log_prob checks. Mean n p,
variance n p (1 - p); entropy
H = -lgamma(n + 1) - n sum_i p_i log p_i + sum_i E[lgamma(x_i + 1)], x_i ~ Binomial(n, p_i).
"""

import numpy as np
from scipy.special import gammaln

from .. import ops
from . import constraints
from ..tensor import Tensor
from .binomial import Binomial
from .categorical import Categorical, one_minus_probs
from .distribution import (
    BaseParams, Distribution, broadcast, follows_value_dtype, is_count, outside_is_impossible, p_log_q,
)
from .stable import deviance, log_factorial_rest

# The largest n below which float64 holds every integer: see Multinomial's docstring.
MAX_TOTAL_COUNT = 2**53


class Multinomial(BaseParams, Distribution):
    """Counts in K categories of ``total_count`` (a non-negative integer, shared by the
    batch) draws with ``probs`` (on the simplex, last axis) or ``logits`` (exactly one).
    event_shape = (K,). No pathwise sample and, as in torch, no enumerate_support."""

    arg_constraints = {"total_count": constraints.nonnegative_integer, "probs": constraints.simplex,
                       "logits": constraints.independent(constraints.real, 1)}

    def __init__(self, total_count=1, probs=None, logits=None, validate_args=None):
        if isinstance(total_count, Tensor):
            total_count = total_count.data
        n = np.asarray(total_count)
        if n.ndim != 0 or not is_count(n).data:
            raise ValueError(f"Multinomial: parameter 'total_count' must be a non-negative integer; got {total_count!r}")
        if n > MAX_TOTAL_COUNT:
            raise ValueError(
                f"Multinomial: parameter 'total_count' must be at most 2**53 = {MAX_TOTAL_COUNT} (beyond it float "
                f"counts skip integers, and draws rounded to floats need not sum to it); got {total_count!r}"
            )
        self.total_count = int(n)
        self._base = Categorical(probs=probs, logits=logits, validate_args=validate_args)
        k = self._base.num_categories
        self.support = constraints.multinomial(self.total_count).described(
            f"vectors of {k} non-negative integers summing to {self.total_count}"
        )
        c = self._base._untyped
        self._untyped = None if c is None else dict(c, total_count=self.total_count)
        super().__init__(self._base.batch_shape, (k,), self._base.dtype, validate_args)

    def _log_probs(self):
        """log p_i with -inf (and a zero gradient, not NaN) where p_i = 0."""
        if self._base._probs is None:
            return self._base.logits
        p = self._base._probs
        positive = p > 0  # recorded: p may depend on a sample
        return ops.where(positive, ops.log(ops.where(positive, p, 1)), -np.inf)

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        p = np.broadcast_to(self.probs.data, self.batch_shape + self.event_shape).astype(np.float64)
        p = p / p.sum(-1, keepdims=True)
        return Tensor(self._rng(rng).multinomial(self.total_count, p, size=shape[:-1]).astype(self.dtype))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        k = self.event_shape[0]
        if x.ndim == 0 or x.shape[-1] != k:
            raise ValueError(f"Multinomial.log_prob: value must have K = {k} on its last axis; got shape {x.shape}")
        inside = self._support(x, ops.all(is_count(x), axis=-1) & (ops.sum(x, axis=-1) == self.total_count))
        x = ops.where(ops.expand_dims(inside, -1), x, 0)
        # Loader's form (the Binomial's): lgamma(n + 1) - sum lgamma(x_i + 1) cancels to
        # nothing at large n. The means n p_i use probs normalized on the last axis (as
        # torch's): given probs may miss a sum of one by the simplex tolerance.
        n = np.asarray(float(self.total_count), dtype=self.dtype)
        p = self.probs
        m = n * p / ops.sum(p, axis=-1, keepdims=True)
        lp = (
            log_factorial_rest(Tensor(n))
            - ops.sum(log_factorial_rest(x), axis=-1)
            - ops.sum(deviance(x, m), axis=-1)
        )
        return outside_is_impossible(inside, lp)

    def entropy(self):
        n = self.total_count
        p, log_p = self.probs, self._log_probs()
        marginal = Binomial(n, probs=p)  # x_i ~ Binomial(n, p_i), batch_shape + (K,)
        support = np.arange(n + 1, dtype=self.dtype).reshape((-1,) + (1,) * (len(self.batch_shape) + 1))
        expected_lgamma = ops.sum(ops.exp(marginal.log_prob(support)) * gammaln(support + 1), axis=0)
        h = -float(gammaln(n + 1)) - n * ops.sum(p_log_q(p, log_p), axis=-1) + ops.sum(expected_lgamma, axis=-1)
        return broadcast(h, self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.total_count * self.probs, self.batch_shape + self.event_shape)

    @property
    def variance(self):
        q = one_minus_probs(self._base)  # accurate for p near 1 from logits
        return broadcast(self.total_count * self.probs * q, self.batch_shape + self.event_shape)

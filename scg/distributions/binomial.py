"""Binomial(total_count, probs=None, logits=None): successes in n Bernoulli(p) trials,
P(x = k) = C(n, k) p^k (1 - p)^(n - k) for k = 0..n.

log p(k) = lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k log p + (n - k) log(1 - p),
evaluated in Loader's saddle-point form (``stable.py``) so that it stays accurate at any n;
mean n p, variance n p (1 - p); entropy by summing over the (finite) support.
"""

import numpy as np

from .. import ops
from . import constraints
from ..tensor import Tensor
from .bernoulli import Bernoulli
from .distribution import (
    BaseParams, Distribution, broadcast, check, follows_value_dtype, is_count, outside_is_impossible, p_log_q,
    params,
)
from .kl import infinite_where, kl_divergence, register_kl
from .stable import deviance, log_factorial_rest


class Binomial(BaseParams, Distribution):
    """Successes in ``total_count`` (non-negative integers) trials with success
    probability ``probs`` in [0, 1] or ``logits`` (exactly one); all broadcast together.
    No pathwise sample; the support 0..total_count can be enumerated when
    total_count is the same for the whole batch. Samples are floats, as in torch;
    sampling refuses total_count >= 2**63 (numpy's counts are int64), log_prob does not."""

    has_enumerate_support = True
    arg_constraints = {"total_count": constraints.nonnegative_integer, "probs": constraints.unit_interval,
                       "logits": constraints.real}

    def __init__(self, total_count=1, probs=None, logits=None, validate_args=None):
        self._base = Bernoulli(probs=probs, logits=logits, validate_args=validate_args)
        given = self._base._given
        param = probs if probs is not None else logits
        # total_count carries no gradient: it takes the probabilities' dtype. A Tensor keeps its
        # history (stop_gradient is recorded), so a graph sees the named axes it carries.
        if isinstance(total_count, Tensor):
            counts = ops.stop_gradient(total_count if total_count.dtype == self._base.dtype
                                       else ops.astype(total_count, self._base.dtype))
        else:
            counts = np.asarray(total_count, dtype=self._base.dtype)
        (self.total_count, _), shape, dtype = params("Binomial", total_count=counts, **{given: self._base._param})
        check("Binomial", "total_count", self.total_count, is_count(self.total_count).data, "a non-negative integer")
        self._untyped = None if self._base._untyped is None else {"total_count": total_count, given: param}
        self.support = constraints.integer_interval(0, self.total_count.data).described("the integers 0..total_count")
        super().__init__(shape, (), dtype, validate_args)

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        if np.any(self.total_count.data >= 2.0**63):  # numpy draws with int64 counts
            raise ValueError(
                f"Binomial.sample: parameter 'total_count' must be below 2**63 to sample; got {self.total_count.data.max()!r}"
            )
        n = np.broadcast_to(self.total_count.data, self.batch_shape).astype(np.int64)
        p = np.broadcast_to(self.probs.data, self.batch_shape).astype(np.float64)
        return Tensor(self._rng(rng).binomial(n, p, size=shape).astype(self.dtype))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        n = self.total_count
        inside = self._support(x, is_count(x) & (x <= n))
        k = ops.where(inside, x, 0)
        log_p, log_q = self._base._log_p()
        # Loader's form: the lgammas of the direct formula are ~n log n and cancel to nothing
        # at large n; p and q come from (log p, log q) so that q is accurate for p near 1.
        lp = (
            log_factorial_rest(n) - log_factorial_rest(k) - log_factorial_rest(n - k)
            - deviance(k, n * ops.exp(log_p)) - deviance(n - k, n * ops.exp(log_q))
        )
        return outside_is_impossible(inside, lp)

    def entropy(self):
        """-sum_k p(k) log p(k) over k = 0..max(total_count), shape batch_shape."""
        k_max = int(np.max(self.total_count.data, initial=0))
        k = np.arange(k_max + 1, dtype=self.dtype).reshape((-1,) + (1,) * len(self.batch_shape))
        lp = self._lenient().log_prob(k)  # -inf where k > total_count
        return broadcast(-ops.sum(p_log_q(ops.exp(lp), lp), axis=0), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.total_count * self.probs, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.total_count * self._base.variance, self.batch_shape)

    @property
    def mode(self):
        """floor((n + 1) p), at most n (the larger of two tied modes, as torch)."""
        n = self.total_count
        return broadcast(ops.minimum(ops.floor((n + 1) * self.probs), n), self.batch_shape)

    def enumerate_support(self, expand=True):
        """0..total_count on a new leading axis: (n + 1,) + batch_shape (floats); needs
        one total_count for the whole batch."""
        counts = np.unique(self.total_count.data)
        if counts.size > 1:
            raise NotImplementedError(
                "Binomial.enumerate_support needs the same total_count across the batch; "
                f"got {counts.tolist()}"
            )
        n = int(counts[0]) if counts.size else 0
        values = np.arange(n + 1, dtype=self.dtype).reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = np.broadcast_to(values, (n + 1,) + self.batch_shape).copy()
        return Tensor(values)


@register_kl(Binomial, Binomial)
def _kl_binomial_binomial(p, q):
    """n KL(Bernoulli(p) || Bernoulli(q)) for the same number of trials n; +inf where p's n is
    larger (p reaches counts q cannot). A smaller n in p has no closed form: refused, as torch."""
    if np.any(p.total_count.data < q.total_count.data):  # counts are parameters without a gradient
        raise NotImplementedError(
            "kl_divergence(Binomial, Binomial) needs p.total_count >= q.total_count (and is finite only where "
            "they are equal); with fewer trials in p there is no closed form: estimate it by summing "
            "p.log_prob(k) - q.log_prob(k) over k = 0..p.total_count"
        )
    kl = p.total_count * kl_divergence(p._base, q._base)
    return infinite_where(p.total_count > q.total_count, kl)

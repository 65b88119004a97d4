"""NegativeBinomial(total_count, probs=None, logits=None), torch's parameterisation: the
number of successes before the r-th failure (r = total_count > 0, real) in Bernoulli(p)
trials, p = probs the probability of a *success*:

    P(x = k) = Gamma(k + r) / (Gamma(r) k!) p^k (1 - p)^r,   k = 0, 1, 2, ...

(scipy.stats.nbinom(r, 1 - p); numpy's negative_binomial(r, 1 - p)). r = 0 or p = 0 put all
the mass at 0. Mean r p / (1 - p) = r e^logits, variance mean / (1 - p), mode
floor((r - 1) p / (1 - p)) (0 when that is negative). No closed-form entropy, as in torch.
Samples are Poisson(G) with G ~ Gamma(r, rate (1 - p) / p) (numpy's sampler), as floats.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .bernoulli import Bernoulli
from . import constraints
from .distribution import (
    BaseParams, Distribution, broadcast, check, follows_value_dtype, is_count, outside_is_impossible, p_log_q,
    params, probs_or_logits,
)
from .stable import lgamma_shift


class NegativeBinomial(BaseParams, Distribution):
    """Successes before ``total_count`` (r >= 0) failures, success probability ``probs`` in
    [0, 1) or ``logits`` (< +inf), exactly one of them; all broadcast together. No pathwise
    sample (use a score-function estimator); the support is infinite (no enumeration)."""

    support = constraints.nonnegative_integer.described("the non-negative integers")
    arg_constraints = {"total_count": constraints.nonnegative, "probs": constraints.half_open_interval(0.0, 1.0), "logits": constraints.real}

    def __init__(self, total_count, probs=None, logits=None, validate_args=None):
        probs_or_logits("NegativeBinomial", probs, logits)  # named here, not as the Bernoulli below
        self._base = Bernoulli(probs=probs, logits=logits, validate_args=validate_args)
        given = self._base._given
        p = self._base._param
        if given == "probs":
            check("NegativeBinomial", "probs", p, p.data < 1, "in [0, 1)")
        else:
            check("NegativeBinomial", "logits", p, p.data < np.inf, "less than +inf")
        if not hasattr(total_count, "dtype"):  # a Python number takes the probabilities' dtype
            total_count = np.asarray(total_count, dtype=self._base.dtype)
        (self.total_count, _), shape, dtype = params("NegativeBinomial", total_count=total_count, **{given: p})
        r = self.total_count
        check("NegativeBinomial", "total_count", r, (r.data >= 0) & np.isfinite(r.data), "non-negative and finite")
        param = probs if probs is not None else logits
        self._untyped = None if self._base._untyped is None else {"total_count": total_count, given: param}
        super().__init__(shape, (), dtype, validate_args)

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        r = np.broadcast_to(self.total_count.data, self.batch_shape).astype(np.float64)
        q = np.broadcast_to(np.exp(self._base._log_p()[1].data), self.batch_shape).astype(np.float64)  # 1 - p
        some = r > 0  # numpy wants r > 0; r = 0 puts all the mass at 0
        x = self._rng(rng).negative_binomial(np.where(some, r, 1.0), q, size=shape)
        return Tensor(np.where(some, x, 0).astype(self.dtype))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, is_count(x))
        k = ops.where(inside, x, 0)
        r = self.total_count
        log_p, log_q = self._base._log_p()
        # log C(k + r - 1, k) = lgamma(k + r) - lgamma(r) - lgamma(k + 1); 0 at k = 0 (also
        # for r = 0, the point mass at 0, where lgamma(r) is inf).
        some = ops.greater(r, 0)
        rs = ops.where(some, r, 1)
        ks = ops.where(some, k, 0)
        log_comb = lgamma_shift(rs, ks) - ops.lgamma(ks + 1)  # 0 where r = 0
        log_comb = ops.where(some | ops.equal(k, 0), log_comb, -np.inf)
        # p_log_q: 0 log 0 = 0 (k = 0 at p = 0; r = 0)
        lp = log_comb + p_log_q(k, log_p) + p_log_q(r, log_q)
        return outside_is_impossible(inside, lp)

    @property
    def mean(self):
        return broadcast(self.total_count * self._odds(), self.batch_shape)

    @property
    def mode(self):
        return broadcast(ops.floor(ops.maximum((self.total_count - 1) * self._odds(), 0)), self.batch_shape)

    @property
    def variance(self):
        log_p, log_q = self._base._log_p()
        return broadcast(self.total_count * ops.exp(log_p - 2 * log_q), self.batch_shape)

    def _odds(self):
        """p / (1 - p) = e^logits, from (log p, log(1 - p)) (exact for tiny p and for logits)."""
        log_p, log_q = self._base._log_p()
        return ops.exp(log_p - log_q)

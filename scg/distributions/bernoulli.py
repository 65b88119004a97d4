"""Bernoulli(probs=None, logits=None): P(x = 1) = p = sigmoid(logit), x in {0, 1}.

log p(x) = x log p + (1 - x) log(1 - p); from logits that is x l - softplus(l).
"""

import numpy as np

from .. import kernels, ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check, outside_is_impossible, p_log_q, params, probs_or_logits, untyped,
)
from .kl import register_kl, weighted_log_ratio


def coin_params(cls_name, probs, logits):
    """What a family parameterized like a coin reads (Bernoulli, ContinuousBernoulli):
    ``(which was given, its Tensor, batch shape, dtype, the untyped parameters)``; ValueError
    unless exactly one of probs and logits is given, or for probs outside [0, 1]."""
    given = probs_or_logits(cls_name, probs, logits)
    value = probs if probs is not None else logits
    (param,), shape, dtype = params(cls_name, **{given: value})
    if given == "probs":
        check(cls_name, "probs", param, (param.data >= 0) & (param.data <= 1), "in [0, 1]")
    return given, param, shape, dtype, untyped(**{given: value})


class Bernoulli(Distribution):
    """A coin with ``probs`` in [0, 1] or ``logits`` (exactly one). No pathwise sample;
    the support {0, 1} can be enumerated."""

    has_enumerate_support = True
    support = constraints.boolean
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}

    def __init__(self, probs=None, logits=None, validate_args=None):
        self._given, param, shape, dtype, self._untyped = coin_params("Bernoulli", probs, logits)
        super().__init__(shape, (), dtype, validate_args)
        self._param = param

    @property
    def probs(self):
        return self._param if self._given == "probs" else ops.sigmoid(self._param)

    @property
    def logits(self):
        if self._given == "logits":
            return self._param
        log_p, log_q = self._log_p()
        return log_p - log_q  # +-inf at p in {0, 1}, without a warning

    def _log_p(self):
        """(log p, log(1 - p)), finite wherever the outcome is possible; no NaN gradients."""
        if self._given == "logits":
            return -ops.softplus(-self._param), -ops.softplus(self._param)
        # The masks are recorded: p may itself depend on a sample (a table indexed by one).
        p = self._param
        positive, below_one = p > 0, p < 1
        log_p = ops.where(positive, ops.log(ops.where(positive, p, 1)), -np.inf)
        log_q = ops.where(below_one, ops.log1p(-ops.where(below_one, p, 0)), -np.inf)
        return log_p, log_q

    def sample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        p = np.broadcast_to(self.probs.data, self.batch_shape)
        u = self._rng(rng).random(shape)
        from ..tensor import Tensor

        return Tensor((u < p).astype(self.dtype))

    def log_prob(self, value):
        x = self._value(value)
        # Every value 0 or 1 (the common case, tested in one read pass): no support mask to
        # compute, record or apply. Else the mask, recorded (x may be a sample).
        inside = None if kernels.all_binary(x.data) else self._support(x, (x == 1) | (x == 0))
        if inside is not None:  # (validation off) outside values as 0 first: their -inf below then
            x = ops.where(inside, x, 0)  # has gradient 0, not 0 * inf = NaN from x = inf or NaN
        if self._given == "logits" and kernels.all_finite(self._param.data):
            # x l - softplus(l): log sigmoid(l) at x = 1, log sigmoid(-l) at x = 0, one pass
            # (at l = +-inf that is inf - inf: such logits take the branch below)
            lp = ops.bernoulli_log_prob(x, self._param)
        else:
            log_p, log_q = self._log_p()
            lp = ops.where(x == 1, log_p, log_q)  # the mask is recorded: lp depends on x
        return lp if inside is None else outside_is_impossible(inside, lp)

    def entropy(self):
        log_p, log_q = self._log_p()
        p = self.probs
        return broadcast(-(p_log_q(p, log_p) + p_log_q(1 - p, log_q)), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.probs, self.batch_shape)

    @property
    def variance(self):
        if self._given == "logits":  # p q = exp(log p + log q): 1 - p loses q's digits when p is near 1
            log_p, log_q = self._log_p()
            return broadcast(ops.exp(log_p + log_q), self.batch_shape)
        p = self.probs
        return broadcast(p * (1 - p), self.batch_shape)

    @property
    def mode(self):
        """1 where p > 1/2, 0 where p < 1/2, NaN at p = 1/2 (both equally likely), as torch."""
        p = self.probs
        return broadcast(ops.where(p == 0.5, np.nan, ops.astype(p > 0.5, self.dtype)), self.batch_shape)

    def enumerate_support(self, expand=True):
        """[0, 1] on a new leading axis: shape (2,) + batch_shape, or (2,) + (1,) * len(batch_shape)."""
        from ..tensor import Tensor

        values = np.arange(2, dtype=self.dtype).reshape((2,) + (1,) * len(self.batch_shape))
        if expand:
            values = np.broadcast_to(values, (2,) + self.batch_shape).copy()
        return Tensor(values)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    # p log(p/q) + (1 - p) log((1 - p)/(1 - q)), 0 log 0 = 0
    (lp1, lp0), (lq1, lq0) = p._log_p(), q._log_p()
    return weighted_log_ratio(p.probs, lp1, lq1) + weighted_log_ratio(1 - p.probs, lp0, lq0)

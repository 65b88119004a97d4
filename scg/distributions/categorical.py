"""Categorical(probs=None, logits=None): P(x = k) = p_k over k = 0..K-1 (last axis).

Logits are normalized with log_softmax, so ``.logits`` are log-probabilities;
-inf logits are allowed (zero-probability categories).
"""

import numpy as np

from .. import ops
from . import constraints
from ..tensor import Tensor
from .distribution import (
    Distribution, broadcast, check, gather_last, is_count, outside_is_impossible, p_log_q, params,
    probs_or_logits, untyped,
)
from .kl import register_kl, weighted_log_ratio


def log_normalize(logits):
    """log_softmax over the last axis, accurate for a dominant category too: with m the
    largest logit (c of them tied there), l - m - log1p(c - 1 + sum_{l_j < m} exp(l_j - m)).
    ops.log_softmax takes the log of the rounded sum 1 + tiny, so log p_k = -3.6e-13 came out
    -3.5993e-13, and so did 1 - p_k = -expm1(log p_k).

    m is a constant for differentiation (``stop_gradient``, recorded: the logits may depend
    on a sample); the categories at the maximum enter as expm1(l_j - m), which is 0 there but
    has the derivative of exp, so every derivative (of any order) is that of log_softmax."""
    shifted = logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    at_max = ops.equal(shifted, 0)
    tied = ops.sum(ops.astype(at_max, logits.dtype), axis=-1, keepdims=True) - 1
    terms = ops.where(at_max, ops.expm1(shifted), ops.exp(shifted))
    return shifted - ops.log1p(ops.sum(terms, axis=-1, keepdims=True) + tied)


def one_minus_probs(cat):
    """1 - p_k of a Categorical: as -expm1(log p_k) when it was given logits, since 1 - p
    rounds away the digits of a p near 1 (relative error eps / (1 - p))."""
    return 1 - cat._probs if cat._probs is not None else -ops.expm1(cat._log_probs)


class Categorical(Distribution):
    """Distribution over indices 0..K-1 given ``probs`` (non-negative, summing to one on
    the last axis) or unnormalized ``logits``. batch_shape = shape[:-1]; samples are int64."""

    has_enumerate_support = True
    arg_constraints = {"probs": constraints.simplex, "logits": constraints.independent(constraints.real, 1)}

    def __init__(self, probs=None, logits=None, validate_args=None):
        given = probs_or_logits(type(self).__name__, probs, logits)
        (param,), shape, dtype = params(type(self).__name__, **{given: probs if probs is not None else logits})
        name = type(self).__name__
        if param.ndim < 1 or param.shape[-1] < 1:
            raise ValueError(f"{name}: parameter '{given}' needs a last axis of categories, got shape {param.shape}")
        if given == "probs":
            # As torch: probs are weights, normalised on the last axis (so [1, 2, 3] is [1/6, 1/3, 1/2],
            # and gradients with respect to them are those of the normalised probabilities).
            check(name, "probs", param, (param.data >= 0) & np.isfinite(param.data), "non-negative and finite")
            total = ops.sum(param, axis=-1, keepdims=True)
            if np.any(total.data == 0):
                raise ValueError(f"{name}: parameter 'probs' sums to zero on the last axis (nothing to normalise)")
            param = param / total
            self._log_probs = ops.log(param)
            self._probs = param
        else:
            if np.any(np.isposinf(param.data)):
                raise ValueError(f"{name}: parameter 'logits' must not contain +inf")
            if np.any(np.all(np.isneginf(param.data), axis=-1)):
                raise ValueError(f"{name}: parameter 'logits' gives every category probability zero")
            self._log_probs = log_normalize(param)
            self._probs = None
        self.num_categories = param.shape[-1]
        self.support = constraints.integer_interval(0, self.num_categories - 1)
        self._untyped = untyped(**{given: probs if probs is not None else logits})
        super().__init__(shape[:-1], (), dtype, validate_args)

    @property
    def logits(self):
        """Normalized log-probabilities, shape batch_shape + (K,)."""
        return self._log_probs

    @property
    def probs(self):
        return self._probs if self._probs is not None else ops.exp(self._log_probs)

    def sample(self, sample_shape=(), rng=None):
        """Inverse-CDF draws of shape sample_shape + batch_shape (int64)."""
        shape = self._extended_shape(sample_shape)
        cdf = np.cumsum(np.broadcast_to(self.probs.data, self.batch_shape + (self.num_categories,)), axis=-1)
        u = self._rng(rng).random(shape + (1,)) * cdf[..., -1:]
        idx = (cdf < u).sum(-1)
        return Tensor(np.minimum(idx, self.num_categories - 1).astype(np.int64))

    def _indices(self, value):
        """(int64 indices, 0 where outside the support; the boolean mask of the support),
        both computed by recorded operations from ``value``, which may be a sample."""
        v = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
        inside = self._support(v, is_count(v) & (v < self.num_categories))
        return ops.astype(ops.where(inside, v, 0), np.int64), inside

    def log_prob(self, value):
        idx, inside = self._indices(value)
        return outside_is_impossible(inside, gather_last(self._log_probs, idx))

    def entropy(self):
        return broadcast(-ops.sum(p_log_q(self.probs, self._log_probs), axis=-1), self.batch_shape)

    @property
    def mean(self):
        return Tensor(np.full(self.batch_shape, np.nan, dtype=self.dtype))

    @property
    def variance(self):
        return Tensor(np.full(self.batch_shape, np.nan, dtype=self.dtype))

    @property
    def mode(self):
        """The most likely index (the first of ties), int64, shape batch_shape (recorded: the
        probabilities may depend on a sample)."""
        top = ops.first_max(self._log_probs)
        index = ops.sum(ops.where(top, np.arange(self.num_categories), 0), axis=-1)
        return broadcast(ops.astype(index, np.int64), self.batch_shape)

    def enumerate_support(self, expand=True):
        """0..K-1 on a new leading axis: shape (K,) + batch_shape (int64)."""
        values = np.arange(self.num_categories).reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = np.broadcast_to(values, (self.num_categories,) + self.batch_shape).copy()
        return Tensor(values)


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    # sum_k p_k (log p_k - log q_k), 0 log 0 = 0
    return ops.sum(weighted_log_ratio(p.probs, p.logits, q.logits), axis=-1)

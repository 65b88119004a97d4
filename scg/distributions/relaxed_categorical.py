"""RelaxedOneHotCategorical(temperature, probs=None, logits=None): the Concrete /
Gumbel-softmax distribution on the simplex (Maddison et al. 2017; Jang et al. 2017).

Sample: y = softmax((l + G) / T), G_k ~ Gumbel(0, 1) = -log(-log u_k).
Density (l normalized logits, K categories):
log p(y) = lgamma(K) + (K - 1) log T + sum_k (l_k - (T + 1) log y_k) - K logsumexp_k(l_k - T log y_k).
"""

import math

import numpy as np

from .. import ops
from . import constraints
from .categorical import Categorical
from .one_hot_categorical import OneHotCategorical
from .distribution import (
    BaseParams, Distribution, clamp_keeping_gradient, outside_is_impossible, register_relaxation, relaxation_params,
    sums_to_one,
)


class RelaxedOneHotCategorical(BaseParams, Distribution):
    """Continuous relaxation of OneHotCategorical at ``temperature`` > 0; event_shape (K,).
    Pathwise samples, every component strictly positive."""

    has_rsample = True
    support = constraints.open_simplex
    arg_constraints = {"temperature": constraints.positive, "probs": constraints.simplex,
                       "logits": constraints.independent(constraints.real, 1)}

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        self._base = Categorical(probs=probs, logits=logits)
        self.temperature, shape, dtype = relaxation_params("RelaxedOneHotCategorical", temperature, self._base)
        super().__init__(shape, (self._base.num_categories,), dtype, validate_args)

    def _t(self):
        """The temperature with a trailing axis, to broadcast against the categories."""
        return ops.expand_dims(self.temperature, -1)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        tiny = np.finfo(self.dtype).tiny
        u = np.clip(self._rng(rng).random(shape), tiny, 1 - np.finfo(self.dtype).eps)
        gumbel = (-np.log(-np.log(u))).astype(self.dtype)
        log_y = ops.log_softmax((self.logits + gumbel) / self._t(), axis=-1)
        return clamp_keeping_gradient(ops.exp(log_y), low=tiny)  # underflowed components: just above 0

    def log_prob(self, value):
        y = self._value(value)
        k = self.event_shape[0]
        if y.shape[-1:] != self.event_shape:
            raise ValueError(
                f"RelaxedOneHotCategorical.log_prob: value of shape {y.shape} does not end in the "
                f"event shape {self.event_shape}"
            )
        inside = self._support(y, ops.all(y > 0, axis=-1) & sums_to_one(y, self.dtype))
        safe = y if inside.data.all() else ops.where(ops.expand_dims(inside, -1), y, 1.0 / k)
        t = self.temperature
        log_y = ops.log(safe)
        lp = (
            math.lgamma(k)
            + (k - 1) * ops.log(t)
            + ops.sum(self.logits - (self._t() + 1) * log_y, axis=-1)
            - k * ops.logsumexp(self.logits - self._t() * log_y, axis=-1)
        )
        return outside_is_impossible(inside, lp)


@register_relaxation(OneHotCategorical)
@register_relaxation(Categorical)
def _relax_categorical(dist, temperature):
    """Categorical.relaxed(temperature) and OneHotCategorical's: the Concrete relaxation,
    RelaxedOneHotCategorical with these logits (its values are one-hot-like vectors, not
    indices)."""
    return RelaxedOneHotCategorical(temperature, logits=dist.logits, validate_args=dist._validate)

"""OneHotCategorical(probs=None, logits=None): a Categorical whose values are one-hot
vectors of length K (event_shape (K,))."""

import numpy as np

from .. import ops
from . import constraints
from ..tensor import Tensor
from .categorical import Categorical, one_minus_probs
from .distribution import BaseParams, Distribution, broadcast, outside_is_impossible
from .kl import kl_divergence, register_kl


class OneHotCategorical(BaseParams, Distribution):
    """One-hot vectors e_k with probability p_k; parameters as :class:`Categorical`."""

    has_enumerate_support = True
    arg_constraints = {"probs": constraints.simplex, "logits": constraints.independent(constraints.real, 1)}

    def __init__(self, probs=None, logits=None, validate_args=None):
        self._base = Categorical(probs=probs, logits=logits, validate_args=validate_args)
        k = self._base.num_categories
        self.support = constraints.one_hot.described(f"one-hot vectors of length {k}")
        super().__init__(self._base.batch_shape, (k,), self._base.dtype, validate_args)

    def sample(self, sample_shape=(), rng=None):
        idx = self._base.sample(sample_shape, rng=rng).data
        # a comparison, not eye[idx]: indexing a plain array (even through np.take, whose numpy
        # dispatch looks only at the table) is invisible to a traced step's recorder
        return Tensor((idx[..., None] == np.arange(self.event_shape[0])).astype(self.dtype))

    def log_prob(self, value):
        x = self._value(value)
        if x.shape[-1:] != self.event_shape:
            raise ValueError(
                f"OneHotCategorical.log_prob: value of shape {x.shape} does not end in the event shape {self.event_shape}"
            )
        # Recorded operations only: x may be a sample, and the graph must see lp depend on it.
        hot = x == 1
        one_hot = ops.all(hot | (x == 0), axis=-1) & (ops.sum(x, axis=-1) == 1)
        inside = self._support(x, one_hot)
        # log p_k at the hot entry: sum_j where(x_j = 1, log p_j, 0) (no 0 * -inf)
        lp = ops.sum(ops.where(hot, self._base.logits, 0), axis=-1)
        return outside_is_impossible(inside, lp)

    def entropy(self):
        return self._base.entropy()

    @property
    def mean(self):
        return broadcast(self.probs, self.batch_shape + self.event_shape)

    @property
    def variance(self):
        return broadcast(self.probs * one_minus_probs(self._base), self.batch_shape + self.event_shape)

    @property
    def mode(self):
        """The one-hot vector of the most likely category (the first of ties)."""
        return broadcast(ops.astype(ops.first_max(self._base.logits), self.dtype), self.batch_shape + self.event_shape)

    def enumerate_support(self, expand=True):
        """The K one-hot vectors on a new leading axis: (K,) + batch_shape + (K,)."""
        k = self.event_shape[0]
        values = np.eye(k, dtype=self.dtype).reshape((k,) + (1,) * len(self.batch_shape) + (k,))
        if expand:
            values = np.broadcast_to(values, (k,) + self.batch_shape + (k,)).copy()
        return Tensor(values)


@register_kl(OneHotCategorical, OneHotCategorical)
def _kl_onehotcategorical_onehotcategorical(p, q):
    return kl_divergence(p._base, q._base)  # the same law on K outcomes, written as one-hot vectors

"""MixtureSameFamily(mixture_distribution, component_distribution): a finite mixture of K
distributions of one family, the components being the last batch axis of one distribution.

With weights w_k (the Categorical ``mixture_distribution``, batch shape B or any shape
broadcasting to it) and components p_k (``component_distribution``, batch shape B + (K,)):

    log p(x) = logsumexp_k (log w_k + log p_k(x)),       shapes: x S + B + E -> S + B;
    mean     = sum_k w_k mu_k,   variance = sum_k w_k var_k + sum_k w_k (mu_k - mean)^2
    (the law of total variance); cdf(x) = sum_k w_k F_k(x) for scalar events.

``sample`` is ancestral: draw k from the mixture and every component, keep the k-th. There is
no pathwise sample (the choice of k is discrete), nor an entropy in closed form, as in torch.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .categorical import Categorical
from .distribution import Distribution


class MixtureSameFamily(Distribution):
    """Mixture of the K components along ``component_distribution``'s last batch axis,
    weighted by the Categorical ``mixture_distribution`` over K categories.
    batch_shape = component batch_shape[:-1], event_shape = the components'."""

    has_rsample = False
    has_enumerate_support = False

    def __init__(self, mixture_distribution, component_distribution, validate_args=None):
        name = "MixtureSameFamily"
        if not isinstance(mixture_distribution, Categorical):
            raise ValueError(
                f"{name}: parameter 'mixture_distribution' must be a Categorical; got {type(mixture_distribution).__name__}"
            )
        if not isinstance(component_distribution, Distribution):
            raise ValueError(
                f"{name}: parameter 'component_distribution' must be a Distribution; got {component_distribution!r}"
            )
        cbs = component_distribution.batch_shape
        k = mixture_distribution.num_categories
        if len(cbs) < 1 or cbs[-1] != k:
            raise ValueError(
                f"{name}: parameter 'component_distribution' needs its last batch axis to hold the "
                f"{k} components of 'mixture_distribution'; its batch shape is {cbs}"
            )
        batch_shape = cbs[:-1]
        mbs = mixture_distribution.batch_shape
        try:
            fits = np.broadcast_shapes(mbs, batch_shape) == batch_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{name}: parameter 'mixture_distribution' has batch shape {mbs}, which does not broadcast "
                f"to the batch shape of 'component_distribution' without its components, {batch_shape}"
            )
        self.mixture_distribution = mixture_distribution
        self.component_distribution = component_distribution
        self._num_component = k
        self.support = component_distribution.support
        dtype = np.result_type(mixture_distribution.dtype, component_distribution.dtype)
        super().__init__(batch_shape, component_distribution.event_shape, dtype, validate_args)

    def _weights(self, log=True):
        """log w (or w), shape B' + (K,) + (1,) * len(E): lined up with the components' values."""
        w = self.mixture_distribution.logits if log else self.mixture_distribution.probs
        return ops.reshape(w, w.shape + (1,) * len(self.event_shape))

    def _pad(self, value):
        """x (S + B + E) -> S + B + (1,) + E: one value for every component."""
        x = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
        return ops.expand_dims(x, x.ndim - len(self.event_shape))

    def log_prob(self, value):
        lp = self.component_distribution.log_prob(self._pad(value))  # S + B + (K,)
        return ops.logsumexp(lp + self.mixture_distribution.logits, axis=-1)

    def cdf(self, value):
        if self.event_shape:
            raise NotImplementedError(
                f"MixtureSameFamily.cdf is defined for scalar components; these have event shape {self.event_shape}"
            )
        return ops.sum(self.component_distribution.cdf(self._pad(value)) * self.mixture_distribution.probs, axis=-1)

    def sample(self, sample_shape=(), rng=None):
        rng = self._rng(rng)
        shape = self._extended_shape(sample_shape)  # S + B + E
        s = shape[: len(shape) - len(self.batch_shape) - len(self.event_shape)]
        k = self.mixture_distribution.sample(s, rng=rng).data  # S + B'
        lead = len(self.batch_shape) - len(self.mixture_distribution.batch_shape)
        k = k.reshape(s + (1,) * lead + self.mixture_distribution.batch_shape)
        k = np.broadcast_to(k, s + self.batch_shape).reshape(s + self.batch_shape + (1,) * (1 + len(self.event_shape)))
        x = self.component_distribution.sample(s, rng=rng).data  # S + B + (K,) + E
        x = np.take_along_axis(x, np.broadcast_to(k, s + self.batch_shape + (1,) + self.event_shape), axis=len(k.shape) - 1 - len(self.event_shape))
        return Tensor(x.reshape(shape))

    @property
    def mean(self):
        axis = -1 - len(self.event_shape)
        return ops.sum(self._weights(log=False) * self.component_distribution.mean, axis=axis)

    @property
    def variance(self):
        axis = -1 - len(self.event_shape)
        w, mu = self._weights(log=False), self.component_distribution.mean
        gap = mu - ops.expand_dims(self.mean, axis)
        return ops.sum(w * (self.component_distribution.variance + gap * gap), axis=axis)

    def __repr__(self):
        return (
            f"MixtureSameFamily({self.mixture_distribution!r}, {self.component_distribution!r}, "
            f"batch_shape={self.batch_shape}, event_shape={self.event_shape})"
        )

"""TransformedDistribution(base_distribution, transforms): the law of y = t_n(...t_1(x)), x ~ base.

Change of variables, one transform at a time from the last: with x_n = y and
x_{i-1} = t_i.inv(x_i),

    log p(y) = log p_base(x_0) - sum_i log |det J_{t_i}(x_{i-1})|.

``rsample`` pushes a reparameterized base draw through the transforms, so its gradient
flows through both. The event has ``max(len(base.event_shape), t.event_dim)`` axes.
"""

import numpy as np

from .. import ops
from ..autodiff import no_grad
from ..tensor import Tensor
from .distribution import Distribution, outside_is_impossible, sum_rightmost
from .transforms import ComposeTransform, Transform


def _flatten(transforms):
    """A Transform or a list of them, compositions unpacked: the list applied in order."""
    items = transforms if isinstance(transforms, (list, tuple)) else [transforms]
    flat = []
    for i, t in enumerate(items):
        if isinstance(t, ComposeTransform):
            flat.extend(_flatten(t.parts))
        elif isinstance(t, Transform):
            flat.append(t)
        else:
            raise ValueError(
                f"TransformedDistribution: parameter 'transforms' must be a Transform or a list of "
                f"Transforms; item {i} is {type(t).__name__}"
            )
    return flat


class TransformedDistribution(Distribution):
    """``base_distribution`` pushed through ``transforms`` (a Transform, a ComposeTransform
    or a list applied in order). ``log_prob`` by the change of variables; ``rsample`` where
    the base has one; mean, variance and entropy only where a subclass knows them."""

    def __init__(self, base_distribution, transforms, validate_args=None):
        if not isinstance(base_distribution, Distribution):
            raise ValueError(
                f"TransformedDistribution: parameter 'base_distribution' must be a Distribution; "
                f"got {type(base_distribution).__name__}"
            )
        self.base_dist = base_distribution
        self.transforms = _flatten(transforms)
        shape = base_distribution.batch_shape + base_distribution.event_shape
        event_dim = max([len(base_distribution.event_shape)] + [t.event_dim for t in self.transforms])
        if event_dim > len(shape):
            raise ValueError(
                f"TransformedDistribution: parameter 'transforms' needs {event_dim} event axes but the "
                f"base distribution has only {len(shape)} axes (shape {shape})"
            )
        split = len(shape) - event_dim
        super().__init__(shape[:split], shape[split:], base_distribution.dtype, validate_args)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def support(self):
        return self.transforms[-1].codomain if self.transforms else self.base_dist.support

    def rsample(self, sample_shape=(), rng=None):
        x = self.base_dist.rsample(sample_shape, rng=rng)
        for t in self.transforms:
            x = t(x)
        return x

    def sample(self, sample_shape=(), rng=None):
        with no_grad():
            x = self.base_dist.sample(sample_shape, rng=rng)
            for t in self.transforms:
                x = t(x)
            return Tensor(x.data)

    def log_prob(self, value):
        y = self._value(value)
        event_dim = len(self.event_shape)
        inside = None  # where y is in every codomain: a recorded boolean Tensor (y may be a sample)
        ladj = 0.0
        for t in reversed(self.transforms):
            ok = t._in_codomain(y)
            if not ok.data.all():  # evaluate at a safe point there; the result is -inf below
                inside = ok if inside is None else inside & ok
                y = ops.where(ok, y, t._codomain_point())
            x = t.inv(y)
            ladj = ladj + sum_rightmost(t.log_abs_det_jacobian(x, y), event_dim - t.event_dim)
            y = x
        if inside is None:
            inside = Tensor(np.ones((), dtype=bool))
        elif event_dim:
            inside = ops.all(inside, axis=tuple(range(-event_dim, 0)))
        inside = self._support(value if isinstance(value, Tensor) else Tensor(np.asarray(value)), inside)
        lp = sum_rightmost(self.base_dist.log_prob(y), event_dim - len(self.base_dist.event_shape)) - ladj
        return outside_is_impossible(inside, lp)

    def __repr__(self):
        return f"TransformedDistribution({self.base_dist!r}, {self.transforms!r})"

"""TransformedDistribution(base_distribution, transforms): the law of y = t_n(...t_1(x)), x ~ base.

Change of variables, one transform at a time from the last: with x_n = y and
x_{i-1} = t_i.inv(x_i),

    log p(y) = log p_base(x_0) - sum_i log |det J_{t_i}(x_{i-1})|.

``rsample`` pushes a reparameterized base draw through the transforms, so its gradient
flows through both. Shapes as torch: y's shape is ``t.forward_shape(base shape)`` (the base is
expanded when a transform's parameters add batch axes), and the event has the codomain's
event axes plus those of the base that the transforms do not couple.
"""

import numpy as np

from .. import ops
from ..autodiff import no_grad
from ..tensor import Tensor
from . import constraints
from .distribution import Distribution, outside_is_impossible, sum_rightmost
from .kl import kl_divergence, register_kl
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


def outside_is_nan(inside, value):
    """``value`` with NaN where ``inside`` is False (a cdf outside the transforms' image,
    without validation: which side of it the point lies on is not known in general)."""
    return value if inside.data.all() else ops.where(inside, value, np.nan)


class _Image(constraints.Constraint):
    """The values the transforms can produce from the base's support: y is in the last
    transform's codomain, its preimage in the one before's, and so on, and the first preimage
    in the base's support (each part's own test, recorded for Tensors). Its text is the last
    codomain's when the base lives on the real line, else "the image of <base support> under
    <transforms>"."""

    def __init__(self, transforms, event_dim, base_support):
        self.transforms, self.event_dim, self.base_support = transforms, event_dim, base_support

    def check(self, value):
        y = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
        event_dim, inside = self.event_dim, None
        for t in reversed(self.transforms):
            ok = t._in_codomain(y)
            ok = ops.broadcast_to(ok, y.shape) if ok.shape != y.shape else ok
            ok = ops.all(ok, axis=tuple(range(-event_dim, 0))) if event_dim else ok
            inside = ok if inside is None else inside & ok
            y = t.inv(ops.where(t._in_codomain(y), y, t._codomain_point(y)))
            event_dim += t.domain_event_dim - t.codomain_event_dim
        if hasattr(self.base_support, "check"):
            inside = inside & self.base_support.check(y)
        return inside if isinstance(value, Tensor) else inside.data

    def _default_text(self):
        if str(self.base_support) == str(constraints.real):
            return str(self.transforms[-1].codomain)
        return f"the image of {self.base_support} under {', '.join(type(t).__name__ for t in self.transforms)}"


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
        self.transforms = _flatten(transforms)
        chain = ComposeTransform(self.transforms)
        base_shape = base_distribution.batch_shape + base_distribution.event_shape
        base_event = len(base_distribution.event_shape)
        if chain.domain_event_dim > len(base_shape):
            raise ValueError(
                f"TransformedDistribution: parameter 'transforms' needs {chain.domain_event_dim} event axes but "
                f"the base distribution has only {len(base_shape)} axes (shape {base_shape})"
            )
        shape = chain.forward_shape(base_shape)
        wanted = chain.inverse_shape(shape)  # a transform's parameters may add batch axes
        if wanted != base_shape:
            base_distribution = base_distribution.expand(wanted[: len(wanted) - base_event])
        self.base_dist = base_distribution
        event_dim = chain.codomain_event_dim + max(base_event - chain.domain_event_dim, 0)
        split = len(shape) - event_dim
        super().__init__(shape[:split], shape[split:], base_distribution.dtype, validate_args)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def support(self):
        if not self.transforms:
            return self.base_dist.support
        return _Image(self.transforms, len(self.event_shape), self.base_dist.support)

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
        event_dim = len(self.event_shape)  # of the current value, as the walk goes back
        inside = None  # where y is in every codomain: a recorded boolean Tensor (y may be a sample)
        ladj = 0.0
        for t in reversed(self.transforms):
            ok = t._in_codomain(y)
            if not ok.data.all():  # evaluate at a safe point there; the result is -inf below
                y = ops.where(ok, y, t._codomain_point(y))
                ok = ops.broadcast_to(ok, y.shape) if ok.shape != y.shape else ok
                ok = ops.all(ok, axis=tuple(range(-event_dim, 0))) if event_dim else ok
                inside = ok if inside is None else inside & ok
            x = t.inv(y)
            event_dim += t.domain_event_dim - t.codomain_event_dim
            ladj = ladj + sum_rightmost(t.log_abs_det_jacobian(x, y), event_dim - t.domain_event_dim)
            y = x
        if inside is None:
            inside = Tensor(np.ones((), dtype=bool))
        inside = self._support(value if isinstance(value, Tensor) else Tensor(np.asarray(value)), inside)
        lp = sum_rightmost(self.base_dist.log_prob(y), event_dim - len(self.base_dist.event_shape)) - ladj
        return outside_is_impossible(inside, lp)

    def _monotone(self, method):
        """The product of the transforms' signs (+1: increasing, -1: decreasing), for cdf and icdf,
        which exist only when every transform is a monotone elementwise map of a scalar base."""
        if self.event_shape or self.base_dist.event_shape:
            raise NotImplementedError(f"TransformedDistribution.{method}: defined for scalar events only")
        sign = 1
        for t in self.transforms:
            s = t.sign  # NotImplementedError names a transform that is not monotone
            if s not in (1, -1):
                raise NotImplementedError(
                    f"TransformedDistribution.{method}: {type(t).__name__} is not monotone here (its sign is "
                    f"mixed across the batch)")
            sign *= s
        return sign

    def cdf(self, value):
        """F(y) = F_base(x) for increasing transforms, 1 - F_base(x) for decreasing ones, x the
        preimage of y."""
        sign = self._monotone("cdf")
        y = self._value(value, "cdf")
        inside = self.support.check(y)  # in every codomain, the first preimage in the base's support
        for t in reversed(self.transforms):  # outside, evaluated at a safe point (then NaN)
            y = t.inv(ops.where(t._in_codomain(y), y, t._codomain_point(y)))
        inside = self._support(value if isinstance(value, Tensor) else Tensor(np.asarray(value)), inside,
                               method="cdf")  # refused here, naming this distribution and the value given
        base = self.base_dist._lenient().cdf(y)
        return outside_is_nan(inside, base if sign == 1 else 1 - base)

    def icdf(self, value):
        """The transforms applied to the base's quantile at p (at 1 - p for a decreasing chain)."""
        sign = self._monotone("icdf")
        p = self._level(value)
        x = self.base_dist.icdf(p if sign == 1 else 1 - p)
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return f"TransformedDistribution({self.base_dist!r}, {self.transforms!r})"


@register_kl(TransformedDistribution, TransformedDistribution)
def _kl_transformed_transformed(p, q):
    """KL of the bases when both push them through the same transforms (KL is invariant under a
    bijection), summed over the base's batch axes that the transforms make part of the event."""
    if p.transforms != q.transforms or p.event_shape != q.event_shape:
        raise NotImplementedError(
            f"kl_divergence(TransformedDistribution, TransformedDistribution) needs the same transforms and "
            f"event shape on both sides; got {p.transforms!r}, event {p.event_shape} and {q.transforms!r}, "
            f"event {q.event_shape}"
        )
    if not all(t.bijective for t in p.transforms):
        raise NotImplementedError(
            f"kl_divergence(TransformedDistribution, TransformedDistribution) needs bijective transforms; got {p.transforms!r}"
        )
    absorbed = max(ComposeTransform(p.transforms).domain_event_dim - len(p.base_dist.event_shape), 0)
    return sum_rightmost(kl_divergence(p.base_dist, q.base_dist), absorbed)

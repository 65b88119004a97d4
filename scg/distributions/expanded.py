"""ExpandedDistribution: a distribution's batch laid out in a larger batch, each new element
an independent copy (what ``Distribution.expand`` returns, and what a plate makes of a
distribution whose batch shape lacks the plate's axis).

The base's batch axis i sits at position ``where[i]`` of the new ``batch_shape`` (by default
right-aligned, torch's ``expand``); every other position, and every base axis of size 1 at
a position of size > 1, is *new*: its elements are independent draws of the base. With
``S`` the sample shape, ``N`` the sizes of the new positions, ``b`` the base's batch and
``E`` the event:

* a draw is the base's draw of shape ``S + N + b + E`` with the N axes moved to their places;
* ``log_prob(x)`` moves x's new axes in front (as sample axes of the base), evaluates the
  base there and moves them back, so the base's own log-density (and its validation) is used;
* ``mean``, ``variance``, ``entropy`` and ``enumerate_support`` are the base's, broadcast.

Every step is a recorded reshape or transpose, so gradients and a graph's named axes follow.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .distribution import Distribution, Wrapper, broadcast, register_wrapper
from .kl import kl_divergence, register_kl


@register_wrapper
class ExpandedDistribution(Wrapper):
    """``base_distribution`` with batch shape ``batch_shape``; base batch axis i at position
    ``where[i]`` (increasing; default: the rightmost positions, as torch's ``expand``). A
    base axis must have size 1 or the size of its position."""

    def __init__(self, base_distribution, batch_shape, where=None, validate_args=None):
        if not isinstance(base_distribution, Distribution):
            raise ValueError(f"ExpandedDistribution: expected a Distribution, got {type(base_distribution).__name__}")
        b = tuple(base_distribution.batch_shape)
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= -1 for n in batch_shape):
            raise ValueError(f"expand: batch_shape must hold non-negative integers (or -1 to keep a size), "
                             f"got {tuple(batch_shape)!r}")
        batch = tuple(int(n) for n in batch_shape)
        rightmost = tuple(range(len(batch) - len(b), len(batch)))  # torch's expand
        where = rightmost if where is None else tuple(where)
        # -1 keeps the base's size there (torch's meaning); it has no meaning for a new axis
        batch = tuple(b[where.index(q)] if n == -1 and q in where else n for q, n in enumerate(batch))
        fits = (len(where) == len(b) and all(0 <= q < len(batch) for q in where)
                and list(where) == sorted(set(where)))
        if not fits or -1 in batch or any(n != 1 and n != batch[q] for n, q in zip(b, where)):
            raise ValueError(
                f"expand: batch_shape {b} of {type(base_distribution).__name__} cannot be expanded to {batch}"
                + ("" if where == rightmost else f" at positions {where}")
                + "; each axis must keep its size or have size 1 (torch's rule: new axes go on the left)"
            )
        pad = [1] * len(batch)
        for n, q in zip(b, where):
            pad[q] = n
        self.base_dist, self.where, self._pad = base_distribution, where, tuple(pad)
        self._new = tuple(q for q in range(len(batch)) if pad[q] == 1 and batch[q] != 1)
        self._new_sizes = tuple(batch[q] for q in self._new)  # drawn as the base's leading sample axes
        super().__init__(batch, base_distribution.event_shape, base_distribution.dtype,
                         base_distribution._validate if validate_args is None else validate_args)

    # ---- layout ------------------------------------------------------------------------
    def lay(self, t, event_nd=None):
        """A Tensor shaped like the base's batch (+ ``event_nd`` trailing axes, default the
        event's) laid out on this batch shape, broadcast."""
        t = t if isinstance(t, Tensor) else Tensor(np.asarray(t, dtype=self.dtype))
        e = len(self.event_shape) if event_nd is None else event_nd
        tail = t.shape[t.ndim - e:] if e else ()
        return broadcast(ops.reshape(t, self._pad + tail), self.batch_shape + tail)

    def _draw(self, draw, sample_shape):
        s_shape = (sample_shape,) if isinstance(sample_shape, (int, np.integer)) else tuple(sample_shape)
        new, batch, event = self._new, self.batch_shape, self.event_shape
        x = draw(s_shape + self._new_sizes)  # S + N + b + E
        s, k, m = len(s_shape), len(new), len(batch)
        x = ops.reshape(x, s_shape + self._new_sizes + self._pad + event)
        order = list(range(s)) + [s + new.index(q) if q in new else s + k + q for q in range(m)]
        order += [s + k + q for q in new] + [s + k + m + j for j in range(len(event))]
        return ops.reshape(ops.transpose(x, order), s_shape + batch + event)

    def rsample(self, sample_shape=(), rng=None):
        return self._draw(lambda shape: self.base_dist.rsample(shape, rng=rng), sample_shape)

    def sample(self, sample_shape=(), rng=None):
        return self._draw(lambda shape: self.base_dist.sample(shape, rng=rng), sample_shape)

    def log_prob(self, value):
        x = self._value(value)
        new, batch, event = self._new, self.batch_shape, self.event_shape
        m, e = len(batch), len(event)
        if x.ndim < m + e:
            x = ops.reshape(x, (1,) * (m + e - x.ndim) + x.shape)
        s_shape = x.shape[: x.ndim - m - e]
        s, k = len(s_shape), len(new)
        have = x.shape[s: s + m]
        if any(h != 1 and h != n for h, n in zip(have, batch)):
            raise ValueError(f"{type(self.base_dist).__name__}.log_prob (expanded to batch {batch}): a value of "
                             f"shape {x.shape} does not broadcast against it")
        # Only the new axes are broadcast (the base broadcasts its own): a value's size-1 axis
        # stays size 1 where the base's parameters carry an axis (so no sizes coincide).
        grown = tuple(batch[q] if q in new else have[q] for q in range(m))
        tail = x.shape[s + m:]  # the value's event axes, which stay last
        x = broadcast(x, s_shape + grown + tail)
        # the new axes in front, where the base reads them as sample axes
        front = [s + q for q in new] + list(range(s)) + [s + q for q in range(m) if q not in new]
        x = ops.transpose(x, front + [s + m + j for j in range(e)])
        base_batch = tuple(1 if q in new else grown[q] for q in self.where)
        x = ops.reshape(x, self._new_sizes + s_shape + base_batch + tail)
        lp = self.base_dist.log_prob(x)  # N + S + b
        lp = ops.reshape(lp, self._new_sizes + s_shape + tuple(1 if q in new else batch[q] for q in range(m)))
        back = list(range(k, k + s)) + [new.index(q) if q in new else k + s + q for q in range(m)]
        back += [k + s + q for q in new]
        return ops.reshape(ops.transpose(lp, back), s_shape + batch)

    def entropy(self):
        return self.lay(self.base_dist.entropy(), 0)

    @property
    def mean(self):
        return self.lay(self.base_dist.mean)

    @property
    def variance(self):
        return self.lay(self.base_dist.variance)

    @property
    def mode(self):
        return self.lay(self.base_dist.mode)

    def enumerate_support(self, expand=True):
        values = self.base_dist.enumerate_support(expand=False)  # (K,) + (1,) * len(b) + E
        shape = values.shape[:1] + (1,) * len(self.batch_shape) + tuple(self.event_shape)
        values = ops.reshape(values, shape)
        return broadcast(values, values.shape[:1] + self.batch_shape + self.event_shape) if expand else values

    def relaxed(self, temperature):
        relaxed = self.base_dist.relaxed(temperature)
        if relaxed.batch_shape != self.base_dist.batch_shape:
            raise ValueError(
                f"relaxed: a temperature of shape {np.shape(temperature)} changes the batch shape of the "
                f"expanded {type(self.base_dist).__name__}; relax the base first, then expand"
            )
        return ExpandedDistribution(relaxed, self.batch_shape, self.where, self._validate)

    def __repr__(self):
        return f"ExpandedDistribution({self.base_dist!r}, batch_shape={self.batch_shape})"


@register_kl(ExpandedDistribution, Distribution)
def _kl_expanded_any(p, q):
    # p's elements are copies of its base's: the base's KL, laid out (torch's right-aligned
    # expand only, where q's batch broadcasts against the base's as it would against p's)
    if p.where != tuple(range(len(p.batch_shape) - len(p.base_dist.batch_shape), len(p.batch_shape))):
        raise NotImplementedError("KL divergence of a distribution expanded at inner positions (a plate's)")
    kl = kl_divergence(p.base_dist, q)
    return broadcast(kl, np.broadcast_shapes(kl.shape, p.batch_shape))


@register_kl(Distribution, ExpandedDistribution)
def _kl_any_expanded(p, q):
    if q.where != tuple(range(len(q.batch_shape) - len(q.base_dist.batch_shape), len(q.batch_shape))):
        raise NotImplementedError("KL divergence of a distribution expanded at inner positions (a plate's)")
    kl = kl_divergence(p, q.base_dist)
    return broadcast(kl, np.broadcast_shapes(kl.shape, q.batch_shape))

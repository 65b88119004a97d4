"""Transforms that act on whole events, and those that combine other transforms.

Same conventions as ``transforms.py`` (torch.distributions' names and semantics); here
``domain_event_dim`` / ``codomain_event_dim`` are the rightmost axes of x / y that one
application couples, and ``log_abs_det_jacobian(x, y)`` has x's shape without them.

* ``SoftmaxTransform``:       y = exp(x) / sum exp(x) on the last axis; inv(y) = log y; not bijective
* ``StickBreakingTransform``: R^(K-1) -> the open K-simplex, y_i = z_i prod_{j<i} (1 - z_j),
                              z_i = sigmoid(x_i - log(K - 1 - i)) (x = 0 maps to the centre);
                              log|J| of (y_0..y_{K-2}) in x = sum_i log z_i + log(1 - z_i) + log r_i,
                              r_i = prod_{j<i} (1 - z_j) the stick left before i
* ``LowerCholeskyTransform``: square x -> its strictly lower part plus exp of its diagonal
                              (a Cholesky factor); not bijective (the upper part is dropped)
* ``ReshapeTransform``:       the event of shape in_shape re-laid as out_shape; log|J| = 0
* ``IndependentTransform``:   a transform with n more rightmost axes counted in its event
* ``CatTransform``:           parts applied to consecutive slices along ``dim``, re-joined
* ``StackTransform``:         part i applied to index i along ``dim``, re-stacked
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .distribution import sum_rightmost, sums_to_one
from .transforms import Transform, _event_dim


def _shifts(n, dtype):
    """log(K - 1 - i) for i = 0..n-1 (K = n + 1): the offsets that centre the stick."""
    return np.log(np.arange(n, 0, -1, dtype=np.float64)).astype(dtype)


def _exclusive_cumsum(x):
    """sum_{j<i} x_j along the last axis, as a product with a constant triangle
    (differentiable to any order with the core's matmul)."""
    n = x.shape[-1]
    return ops.matmul(x, np.triu(np.ones((n, n), dtype=x.dtype), 1))


class SoftmaxTransform(Transform):
    """y = softmax(x) on the last axis, onto the open simplex. Not injective (x + c gives the
    same y): ``inv(y)`` is log y, one of the preimages, and there is no log|J|."""

    codomain = "the simplex (y > 0, sum y = 1 on the last axis)"
    domain_event_dim = codomain_event_dim = 1

    def _call(self, x):
        return ops.softmax(x, axis=-1)

    def _inverse(self, y):
        return ops.log(y)

    def _in_codomain(self, y):
        return ops.expand_dims(ops.all(y > 0, axis=-1) & sums_to_one(y), -1)

    def _codomain_point(self, y):
        return np.full(y.shape[-1], 1.0 / y.shape[-1], dtype=y.dtype)

    def _key(self):
        return ()


class StickBreakingTransform(Transform):
    """x (..., K-1) real -> y (..., K) on the open simplex by breaking a stick: piece i takes
    the fraction z_i = sigmoid(x_i - log(K - 1 - i)) of what is left. Bijective onto the
    simplex; log|J| (shape x.shape[:-1]) is that of the map x -> y[..., :-1], as torch."""

    codomain = "the simplex (y > 0, sum y = 1 on the last axis)"
    domain_event_dim = codomain_event_dim = 1
    bijective = True

    def _call(self, x):
        u = x - _shifts(x.shape[-1], x.dtype)
        log_left = -_exclusive_cumsum(ops.softplus(u))  # log r_i = sum_{j<i} log(1 - z_j)
        log_last = -ops.sum(ops.softplus(u), axis=-1, keepdims=True)
        return ops.exp(ops.concatenate([log_left - ops.softplus(-u), log_last], axis=-1))

    def _inverse(self, y):
        head = y[..., :-1]
        # what is left after piece i, sum_{j>i} y_j, summed from the small end (no 1 - cumsum)
        k = y.shape[-1]
        rest = ops.matmul(y, np.tril(np.ones((k, k - 1), dtype=y.dtype), -1))
        return ops.log(head) - ops.log(rest) + _shifts(k - 1, y.dtype)

    def log_abs_det_jacobian(self, x, y):
        # triangular Jacobian: dy_i/dx_i = z_i (1 - z_i) r_i
        u = x - _shifts(x.shape[-1], x.dtype)
        sp = ops.softplus(u)
        return ops.sum(-ops.softplus(-u) - sp - _exclusive_cumsum(sp), axis=-1)

    def forward_shape(self, shape):
        if len(shape) < 1:
            raise ValueError("StickBreakingTransform: needs at least one axis")
        return tuple(shape[:-1]) + (shape[-1] + 1,)

    def inverse_shape(self, shape):
        if len(shape) < 1 or shape[-1] < 1:
            raise ValueError(f"StickBreakingTransform: a simplex of shape {tuple(shape)} has no stick to break")
        return tuple(shape[:-1]) + (shape[-1] - 1,)

    _in_codomain = SoftmaxTransform._in_codomain
    _codomain_point = SoftmaxTransform._codomain_point

    def _key(self):
        return ()


class LowerCholeskyTransform(Transform):
    """Square x (..., n, n) -> its strictly lower triangle plus exp of its diagonal: a lower
    triangular matrix with a positive diagonal. Not injective (x's upper triangle is dropped):
    ``inv(y)`` puts log of the diagonal back and zeros above it; there is no log|J|."""

    domain = "square matrices"
    codomain = "lower-triangular matrices with a positive diagonal"
    domain_event_dim = codomain_event_dim = 2

    @staticmethod
    def _masks(n):
        return np.eye(n, dtype=bool), np.tril(np.ones((n, n), dtype=bool), -1)

    def _call(self, x):
        diag, lower = self._masks(x.shape[-1])
        # exp only of the diagonal: an upper entry's exp may overflow, and 0 * inf in a VJP is NaN
        return ops.where(diag, ops.exp(ops.where(diag, x, 0)), ops.where(lower, x, 0))

    def _inverse(self, y):
        diag, lower = self._masks(y.shape[-1])
        return ops.where(diag, ops.log(ops.where(diag, y, 1)), ops.where(lower, y, 0))

    def _in_codomain(self, y):
        diag, lower = self._masks(y.shape[-1])
        ok = ops.all(ops.where(diag, y > 0, ops.equal(y, 0) | lower), axis=(-2, -1))
        return ops.reshape(ok, ok.shape + (1, 1))

    def _codomain_point(self, y):
        return np.eye(y.shape[-1], dtype=y.dtype)

    def _key(self):
        return ()


class ReshapeTransform(Transform):
    """The rightmost axes of x, of shape ``in_shape``, re-laid as ``out_shape`` (same number
    of elements, row-major order). A bijection with log|J| = 0, of shape x's batch."""

    bijective = True

    def __init__(self, in_shape, out_shape, cache_size=0):
        super().__init__(cache_size)
        self.in_shape = _shape("in_shape", in_shape)
        self.out_shape = _shape("out_shape", out_shape)
        if np.prod(self.in_shape, dtype=np.int64) != np.prod(self.out_shape, dtype=np.int64):
            raise ValueError(
                f"ReshapeTransform: parameters 'in_shape' {self.in_shape} and 'out_shape' {self.out_shape} "
                f"hold different numbers of elements"
            )
        self.domain_event_dim, self.codomain_event_dim = len(self.in_shape), len(self.out_shape)

    def _batch(self, shape, event, name):
        cut = len(shape) - len(event)
        if cut < 0 or tuple(shape[cut:]) != event:
            raise ValueError(f"ReshapeTransform: {name} of shape {tuple(shape)} does not end in {event}")
        return tuple(shape[:cut])

    def _call(self, x):
        return ops.reshape(x, self._batch(x.shape, self.in_shape, "x") + self.out_shape)

    def _inverse(self, y):
        return ops.reshape(y, self._batch(y.shape, self.out_shape, "y") + self.in_shape)

    def log_abs_det_jacobian(self, x, y):
        return Tensor(np.zeros(self._batch(x.shape, self.in_shape, "x"), dtype=x.dtype))

    def forward_shape(self, shape):
        return self._batch(shape, self.in_shape, "x") + self.out_shape

    def inverse_shape(self, shape):
        return self._batch(shape, self.out_shape, "y") + self.in_shape

    def __repr__(self):
        return f"ReshapeTransform(in_shape={self.in_shape}, out_shape={self.out_shape})"


def _shape(name, shape):
    try:
        shape = tuple(int(n) for n in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
    except (TypeError, ValueError):
        raise ValueError(f"ReshapeTransform: parameter '{name}' must be a tuple of integers; got {shape!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"ReshapeTransform: parameter '{name}' must hold non-negative sizes; got {shape}")
    return shape


class IndependentTransform(Transform):
    """``base_transform`` with its ``reinterpreted_batch_ndims`` rightmost batch axes counted
    in the event: the same map, log|J| summed over those axes too."""

    def __init__(self, base_transform, reinterpreted_batch_ndims, cache_size=0):
        super().__init__(cache_size)
        if not isinstance(base_transform, Transform):
            raise ValueError(
                f"IndependentTransform: parameter 'base_transform' must be a Transform; got {type(base_transform).__name__}"
            )
        n = _event_dim("IndependentTransform", reinterpreted_batch_ndims, "reinterpreted_batch_ndims")
        self.base_transform, self.reinterpreted_batch_ndims = base_transform, n
        self.domain, self.codomain = base_transform.domain, base_transform.codomain
        self.domain_event_dim = base_transform.domain_event_dim + n
        self.codomain_event_dim = base_transform.codomain_event_dim + n
        self.bijective = base_transform.bijective

    @property
    def sign(self):
        return self.base_transform.sign

    def _call(self, x):
        return self.base_transform(x)

    def _inverse(self, y):
        return self.base_transform.inv(y)

    def log_abs_det_jacobian(self, x, y):
        return sum_rightmost(self.base_transform.log_abs_det_jacobian(x, y), self.reinterpreted_batch_ndims)

    def forward_shape(self, shape):
        return self.base_transform.forward_shape(shape)

    def inverse_shape(self, shape):
        return self.base_transform.inverse_shape(shape)

    def _in_codomain(self, y):
        return self.base_transform._in_codomain(y)

    def _codomain_point(self, y):
        return self.base_transform._codomain_point(y)

    def __repr__(self):
        return f"IndependentTransform({self.base_transform!r}, {self.reinterpreted_batch_ndims})"


def _parts(cls_name, tseq):
    tseq = list(tseq)
    for i, t in enumerate(tseq):
        if not isinstance(t, Transform):
            raise ValueError(f"{cls_name}: parameter 'tseq' must hold Transforms; item {i} is {type(t).__name__}")
    if not tseq:
        raise ValueError(f"{cls_name}: parameter 'tseq' must hold at least one Transform")
    return tseq


class _Joined(Transform):
    """Shared by CatTransform and StackTransform: the parts apply to pieces of x along
    ``dim``, which ``_pieces(x)`` cuts and ``_join(list)`` puts back together."""

    def _axis(self, t):
        if not -t.ndim <= self.dim < t.ndim:
            raise ValueError(f"{type(self).__name__}: dim {self.dim} is out of range for a value with {t.ndim} axes")
        return self.dim % t.ndim

    def _call(self, x):
        return self._join([t(piece) for t, piece in zip(self.transforms, self._pieces(x))], x)

    def _inverse(self, y):
        return self._join([t.inv(piece) for t, piece in zip(self.transforms, self._pieces(y))], y)

    def _in_codomain(self, y):
        pieces = self._pieces(y)
        return self._join([broadcast_bool(t._in_codomain(p), p.shape) for t, p in zip(self.transforms, pieces)], y)

    def _codomain_point(self, y):
        pieces = self._pieces(y)
        points = [Tensor(np.broadcast_to(np.asarray(t._codomain_point(p), dtype=y.dtype), p.shape))
                  for t, p in zip(self.transforms, pieces)]
        return self._join(points, y).data

    @property
    def bijective(self):
        return all(t.bijective for t in self.transforms)


def broadcast_bool(ok, shape):
    return ops.broadcast_to(ok, tuple(shape)) if ok.shape != tuple(shape) else ok


class CatTransform(_Joined):
    """x cut along axis ``dim`` into consecutive slices of ``lengths`` (default 1 each), part i
    applied to slice i, the results concatenated. log|J| is joined the same way when ``dim`` is
    a batch axis of the parts' log|J|s, and summed over the parts when it is an event axis."""

    def __init__(self, tseq, dim=0, lengths=None, cache_size=0):
        super().__init__(cache_size)
        self.transforms = _parts("CatTransform", tseq)
        lengths = [1] * len(self.transforms) if lengths is None else [int(n) for n in lengths]
        if len(lengths) != len(self.transforms) or any(n < 0 for n in lengths):
            raise ValueError(
                f"CatTransform: parameter 'lengths' must give one non-negative length per transform "
                f"({len(self.transforms)}); got {lengths}"
            )
        for t in self.transforms:
            if t.domain_event_dim != t.codomain_event_dim:
                raise ValueError(f"CatTransform: parameter 'tseq' holds {t!r}, which changes the event's rank")
        self.lengths, self.length, self.dim = lengths, sum(lengths), int(dim)
        self.domain_event_dim = self.codomain_event_dim = max(t.event_dim for t in self.transforms)
        self.domain = "Cat(" + ", ".join(t.domain for t in self.transforms) + ")"
        self.codomain = "Cat(" + ", ".join(t.codomain for t in self.transforms) + ")"

    def _pieces(self, x):
        axis = self._axis(x)
        if x.shape[axis] != self.length:
            raise ValueError(f"CatTransform: axis {self.dim} of a value of shape {x.shape} must have length {self.length}")
        ends = np.cumsum([0] + self.lengths)
        lead = (slice(None),) * axis
        return [x[lead + (slice(a, b),)] for a, b in zip(ends[:-1], ends[1:])]

    def _join(self, pieces, like):
        return ops.concatenate(pieces, axis=self._axis(like))

    def log_abs_det_jacobian(self, x, y):
        ladjs = [sum_rightmost(t.log_abs_det_jacobian(a, b), self.event_dim - t.event_dim)
                 for t, a, b in zip(self.transforms, self._pieces(x), self._pieces(y))]
        axis = self._axis(x) - x.ndim + self.event_dim  # counted from the right of log|J|
        if axis < 0:
            return ops.concatenate(ladjs, axis=axis)
        total = ladjs[0]
        for ladj in ladjs[1:]:
            total = total + ladj
        return total

    def __repr__(self):
        return f"CatTransform({self.transforms!r}, dim={self.dim}, lengths={self.lengths})"


class StackTransform(_Joined):
    """Part i applied to x[..., i, ...] (index i along axis ``dim``), the results stacked back
    along ``dim``; log|J| stacked the same way. The parts must be elementwise (event_dim 0),
    as the stacking axis is then a batch axis of every part's log|J|."""

    def __init__(self, tseq, dim=0, cache_size=0):
        super().__init__(cache_size)
        self.transforms = _parts("StackTransform", tseq)
        for t in self.transforms:
            if t.domain_event_dim or t.codomain_event_dim:
                raise ValueError(f"StackTransform: parameter 'tseq' holds {t!r}, which is not elementwise")
        self.dim = int(dim)
        self.domain = "Stack(" + ", ".join(t.domain for t in self.transforms) + ")"
        self.codomain = "Stack(" + ", ".join(t.codomain for t in self.transforms) + ")"

    def _pieces(self, x):
        axis = self._axis(x)
        if x.shape[axis] != len(self.transforms):
            raise ValueError(
                f"StackTransform: axis {self.dim} of a value of shape {x.shape} must have length {len(self.transforms)}"
            )
        lead = (slice(None),) * axis
        return [x[lead + (i,)] for i in range(len(self.transforms))]

    def _join(self, pieces, like):
        return ops.stack(pieces, axis=self._axis(like))

    def log_abs_det_jacobian(self, x, y):
        ladjs = [t.log_abs_det_jacobian(a, b) for t, a, b in zip(self.transforms, self._pieces(x), self._pieces(y))]
        return ops.stack(ladjs, axis=self._axis(x))

    def __repr__(self):
        return f"StackTransform({self.transforms!r}, dim={self.dim})"

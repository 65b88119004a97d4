"""Bijective transforms for TransformedDistribution, with torch.distributions' conventions.

A transform ``t`` maps ``y = t(x)``; ``t.inv(y)`` maps back; ``t.log_abs_det_jacobian(x, y)``
is log |dy/dx|, elementwise (summed over the rightmost ``event_dim`` axes). Everything is
written with differentiable operations, so densities and draws through transforms are
differentiable to any order in the values and in the transform's parameters.

* ``ExpTransform``:        y = exp(x),            log|J| = x
* ``SigmoidTransform``:    y = 1 / (1 + e^-x),    log|J| = -softplus(-x) - softplus(x)
* ``TanhTransform``:       y = tanh(x),           log|J| = 2 (log 2 - x - softplus(-2x))
* ``AffineTransform``:     y = loc + scale x,     log|J| = log|scale|
* ``SoftplusTransform``:   y = log(1 + e^x),      log|J| = -softplus(-x)
* ``PowerTransform``:      y = x^e on (0, inf),   log|J| = log|e| + (e - 1) log x
* ``AbsTransform``:        y = |x|                (not a bijection: inv(y) = y, no log|J|)
* ``ComposeTransform``:    y = t_n(...t_1(x)),    log|J| = sum_i log|J_i| at the intermediate values

Every transform takes ``cache_size`` (0 or 1, see :class:`Transform`). Transforms acting on
whole events (softmax, stick breaking, reshape, ...) and the combinators (Cat, Stack,
Independent) are in ``event_transforms.py``.
"""

import copy
import math

import numpy as np

from .. import ops
from ..tensor import Tensor
from .distribution import broadcast, check, clamp_keeping_gradient, keep_inside_unit_interval, sum_rightmost

LOG_2 = math.log(2.0)


class Transform:
    """Base class: ``y = t(x)``, ``x = t.inv(y)``, ``log_abs_det_jacobian(x, y)``.

    ``domain`` and ``codomain`` describe where x and y live; ``domain_event_dim`` and
    ``codomain_event_dim`` are the numbers of rightmost axes of x and of y that the map couples
    (0 for elementwise transforms; they differ only where the event changes rank, as
    ReshapeTransform), and ``event_dim`` is that number when the two agree (torch's rule).
    ``bijective`` says whether ``inv`` is a true inverse; ``sign`` (+1 or -1) is the sign of
    dy/dx for monotone elementwise transforms (others raise ``NotImplementedError``).

    ``cache_size`` is 0 or 1; with 1 the transform remembers its last pair (x, y), so that
    ``t(x)`` of that same x object and ``t.inv(y)`` of that same y object return the other
    exactly, without recomputing (as torch; a draw pushed through a transform is inverted
    to the very base value it came from)."""

    domain = "the real numbers"
    codomain = "the real numbers"
    domain_event_dim = 0
    codomain_event_dim = 0
    bijective = False
    _cache_size = 0
    _cached = None  # (x, y) of the last call, when _cache_size is 1

    def __init__(self, cache_size=0):
        if isinstance(cache_size, bool) or cache_size not in (0, 1):
            raise ValueError(f"{type(self).__name__}: parameter 'cache_size' must be 0 or 1; got {cache_size!r}")
        self._cache_size = cache_size
        self._cached = None

    @property
    def event_dim(self):
        """The number of event axes, when x and y have as many (else ``ValueError``)."""
        if self.domain_event_dim != self.codomain_event_dim:
            raise ValueError(
                f"{type(self).__name__} has {self.domain_event_dim} event axes in x and "
                f"{self.codomain_event_dim} in y: use domain_event_dim or codomain_event_dim"
            )
        return self.domain_event_dim

    @property
    def sign(self):
        raise NotImplementedError(f"{type(self).__name__} has no sign (it is not a monotone elementwise map)")

    @property
    def cache_size(self):
        return self._cache_size

    def with_cache(self, cache_size=1):
        """This transform with ``cache_size`` (itself when it already has it)."""
        if cache_size == self._cache_size:
            return self
        Transform.__init__(new := copy.copy(self), cache_size)
        return new

    def __call__(self, x):
        if self._cached is not None and x is self._cached[0]:
            return self._cached[1]
        y = self._call(x if isinstance(x, Tensor) else Tensor(np.asarray(x)))
        if self._cache_size:
            self._cached = (x, y)
        return y

    def _inv_call(self, y):
        """``inv(y)``, from the cache when y is the last value this transform produced."""
        if self._cached is not None and y is self._cached[1]:
            return self._cached[0]
        x = self._inverse(y if isinstance(y, Tensor) else Tensor(np.asarray(y)))
        if self._cache_size:
            self._cached = (x, y)
        return x

    @property
    def inv(self):
        """The inverse transform: ``t.inv(t(x)) == x``."""
        return _Inverse(self)

    def log_abs_det_jacobian(self, x, y):
        """log |dy/dx| at ``x`` (with ``y = t(x)``): shape of x without the event axes."""
        raise NotImplementedError(f"{type(self).__name__} does not implement log_abs_det_jacobian")

    def forward_shape(self, shape):
        """The shape of ``t(x)`` for x of ``shape``."""
        return tuple(shape)

    def inverse_shape(self, shape):
        """The shape of ``t.inv(y)`` for y of ``shape``."""
        return tuple(shape)

    def _call(self, x):
        raise NotImplementedError

    def _inverse(self, y):
        raise NotImplementedError(f"{type(self).__name__} has no inverse")

    def _in_codomain(self, y):
        """Boolean Tensor that broadcasts against y (recorded: y may be a sample): y is a value
        the transform can produce; for an event transform, one value per event (its axes kept
        with length 1). Here every value: a 0-d True that broadcasts against any y."""
        return Tensor(np.ones((), dtype=bool))

    def _codomain_point(self, y):
        """A value inside the codomain that broadcasts against ``y`` (to evaluate at in place
        of one outside it)."""
        return 0.0

    def _key(self):
        """What ``==`` compares between two transforms of the same class (None: identity only,
        as torch for the transforms it does not compare)."""
        return None

    def __eq__(self, other):
        if self is other:
            return True
        if type(self) is not type(other):
            return False
        a, b = self._key(), other._key()
        return a is not None and b is not None and len(a) == len(b) and all(map(_same, a, b))

    __hash__ = object.__hash__  # by identity (torch's transforms are unhashable)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _same(a, b):
    """Two parameters of a transform are the same map: transforms equal, numbers and arrays
    equal after broadcasting."""
    if isinstance(a, Transform) or isinstance(b, Transform):
        return a == b
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    a, b = (np.asarray(v.data if isinstance(v, Tensor) else v) for v in (a, b))
    try:
        return bool(np.all(a == b)) and np.broadcast_shapes(a.shape, b.shape) is not None
    except ValueError:
        return False


class _Inverse(Transform):
    """``t.inv``: the transform with its directions swapped (sharing t's cache)."""

    def __init__(self, transform):
        self._t = transform
        self.domain, self.codomain = transform.codomain, transform.domain
        self.domain_event_dim, self.codomain_event_dim = transform.codomain_event_dim, transform.domain_event_dim
        self.bijective = transform.bijective

    @property
    def sign(self):
        return self._t.sign

    @property
    def cache_size(self):
        return self._t.cache_size

    def with_cache(self, cache_size=1):
        return self._t.with_cache(cache_size).inv

    @property
    def inv(self):
        return self._t

    def __call__(self, y):
        return self._t._inv_call(y)

    def _inv_call(self, x):
        return self._t(x)

    def log_abs_det_jacobian(self, y, x):
        """log |dx/dy| = -log |dy/dx|."""
        return -self._t.log_abs_det_jacobian(x, y)

    def forward_shape(self, shape):
        return self._t.inverse_shape(shape)

    def inverse_shape(self, shape):
        return self._t.forward_shape(shape)

    def _key(self):
        return (self._t,)

    def __repr__(self):
        return f"{self._t!r}.inv"


class _Elementwise(Transform):
    """A parameterless monotone increasing bijection applied elementwise: equal to any other
    instance of its class."""

    bijective = True
    sign = 1

    def _key(self):
        return ()


class ExpTransform(_Elementwise):
    """y = exp(x), from the reals onto (0, inf); log|dy/dx| = x."""

    codomain = "y > 0"

    def _call(self, x):
        return ops.exp(x)

    def _inverse(self, y):
        return ops.log(y)

    def log_abs_det_jacobian(self, x, y):
        return x

    def _in_codomain(self, y):
        return y > 0

    def _codomain_point(self, y):
        return 1.0


class SigmoidTransform(_Elementwise):
    """y = sigmoid(x), from the reals onto (0, 1); log|dy/dx| = -softplus(-x) - softplus(x).

    Draws that round to 0 or 1 are kept at the nearest representable value inside
    (tiny and the largest float below 1), with the gradient of the exact sigmoid,
    so that a sample always has a finite density."""

    codomain = "0 < y < 1"

    def _call(self, x):
        y = ops.sigmoid(x)
        return keep_inside_unit_interval(y)

    def _inverse(self, y):
        return ops.log(y) - ops.log1p(-y)

    def log_abs_det_jacobian(self, x, y):
        return -ops.softplus(-x) - ops.softplus(x)

    def _in_codomain(self, y):
        return (y > 0) & (y < 1)

    def _codomain_point(self, y):
        return 0.5


class TanhTransform(_Elementwise):
    """y = tanh(x), from the reals onto (-1, 1); log|dy/dx| = 2 (log 2 - x - softplus(-2x)).

    Draws that round to -1 or 1 are kept at the nearest representable value inside,
    with the gradient of the exact tanh (as SigmoidTransform)."""

    codomain = "-1 < y < 1"

    def _call(self, x):
        y = ops.tanh(x)
        one = y.dtype.type(1)
        return clamp_keeping_gradient(y, np.nextafter(-one, 0), np.nextafter(one, 0))

    def _inverse(self, y):
        return 0.5 * (ops.log1p(y) - ops.log1p(-y))  # atanh

    def log_abs_det_jacobian(self, x, y):
        return 2.0 * (LOG_2 - x - ops.softplus(-2.0 * x))

    def _in_codomain(self, y):
        return (y > -1) & (y < 1)


class AffineTransform(Transform):
    """y = loc + scale * x with ``scale`` nonzero and finite; log|dy/dx| = log|scale|,
    summed over the rightmost ``event_dim`` axes. Python-number parameters take the
    dtype of the value they meet. ``sign`` is 0 when scale's signs are mixed."""

    bijective = True

    def __init__(self, loc, scale, event_dim=0, cache_size=0):
        super().__init__(cache_size)
        self.loc, self.scale = (p if _is_number(p) else _as_tensor(p, n) for p, n in ((loc, "loc"), (scale, "scale")))
        for name, p in (("loc", self.loc), ("scale", self.scale)):
            t = p if isinstance(p, Tensor) else Tensor(np.asarray(p, dtype=np.float64))
            check("AffineTransform", name, t, np.isfinite(t.data), "finite")
        s = self.scale if isinstance(self.scale, Tensor) else Tensor(np.asarray(self.scale, dtype=np.float64))
        check("AffineTransform", "scale", s, s.data != 0, "nonzero")
        self.domain_event_dim = self.codomain_event_dim = _event_dim("AffineTransform", event_dim)
        sign = np.sign(s.data)
        self._sign = int(sign.flat[0]) if sign.size and (sign == sign.flat[0]).all() else 0  # 0: mixed

    @property
    def sign(self):
        return self._sign

    def _call(self, x):
        return self.loc + self.scale * x

    def _inverse(self, y):
        return (y - self.loc) / self.scale

    def log_abs_det_jacobian(self, x, y):
        if isinstance(self.scale, Tensor):
            ladj = broadcast(ops.log(ops.abs(self.scale)), np.broadcast_shapes(x.shape, self.scale.shape))
        else:  # a Python number: a constant in x's dtype
            ladj = Tensor(np.full(x.shape, math.log(abs(self.scale)), dtype=x.dtype))
        return sum_rightmost(ladj, self.event_dim)

    def forward_shape(self, shape):
        return np.broadcast_shapes(tuple(shape), np.shape(_data(self.loc)), np.shape(_data(self.scale)))

    inverse_shape = forward_shape

    def _key(self):
        return (self.loc, self.scale, self.event_dim)

    def __repr__(self):
        return f"AffineTransform(loc={self.loc!r}, scale={self.scale!r})"


class SoftplusTransform(_Elementwise):
    """y = softplus(x) = log(1 + e^x), from the reals onto (0, inf); x = y + log(1 - e^-y);
    log|dy/dx| = log sigmoid(x) = -softplus(-x)."""

    codomain = "y > 0"

    def _call(self, x):
        return ops.softplus(x)

    def _inverse(self, y):
        return y + ops.log(-ops.expm1(-y))

    def log_abs_det_jacobian(self, x, y):
        return -ops.softplus(-x)

    def _in_codomain(self, y):
        return y > 0

    def _codomain_point(self, y):
        return 1.0


class PowerTransform(Transform):
    """y = x^exponent on (0, inf) onto (0, inf), ``exponent`` nonzero and finite (a number or a
    Tensor, which broadcasts against x and may carry a gradient); x = y^(1/exponent);
    log|dy/dx| = log|exponent| + (exponent - 1) log x. ``sign`` is the exponent's (0 if mixed)."""

    domain = "x > 0"
    codomain = "y > 0"
    bijective = True

    def __init__(self, exponent, cache_size=0):
        super().__init__(cache_size)
        self.exponent = exponent if _is_number(exponent) else _as_tensor(exponent, "exponent", "PowerTransform")
        e = np.asarray(_data(self.exponent), dtype=np.float64)
        check("PowerTransform", "exponent", Tensor(e), np.isfinite(e) & (e != 0), "finite and nonzero")
        sign = np.sign(e)
        self._sign = int(sign.flat[0]) if sign.size and (sign == sign.flat[0]).all() else 0

    @property
    def sign(self):
        return self._sign

    def _call(self, x):
        return x**self.exponent

    def _inverse(self, y):
        return y ** (1.0 / self.exponent)

    def log_abs_det_jacobian(self, x, y):
        e = self.exponent
        log_e = math.log(abs(e)) if _is_number(e) else ops.log(ops.abs(e))
        return log_e + (e - 1.0) * ops.log(x)

    def forward_shape(self, shape):
        return np.broadcast_shapes(tuple(shape), np.shape(_data(self.exponent)))

    inverse_shape = forward_shape

    def _in_codomain(self, y):
        return y > 0

    def _codomain_point(self, y):
        return 1.0

    def _key(self):
        return (self.exponent,)

    def __repr__(self):
        return f"PowerTransform(exponent={self.exponent!r})"


class AbsTransform(Transform):
    """y = |x|, from the reals onto [0, inf). Not a bijection: ``inv(y)`` is y (the
    non-negative preimage), and there is no log|dy/dx| to change variables with."""

    codomain = "y >= 0"

    def _call(self, x):
        return ops.abs(x)

    def _inverse(self, y):
        return y

    def _in_codomain(self, y):
        return y >= 0

    def _key(self):
        return ()


class ComposeTransform(Transform):
    """``parts`` applied in order: y = parts[-1](...parts[0](x)); log|J| is the sum of the
    parts' at the intermediate values, each summed over the event axes it does not couple
    itself. The event axes of x are the most any part needs, traced back from the last."""

    def __init__(self, parts, cache_size=0):
        super().__init__(cache_size)
        parts = list(parts)
        for i, t in enumerate(parts):
            if not isinstance(t, Transform):
                raise ValueError(f"ComposeTransform: parameter 'parts' must hold Transforms; item {i} is {type(t).__name__}")
        self.parts = parts
        self.bijective = all(t.bijective for t in parts)
        if parts:
            self.domain, self.codomain = parts[0].domain, parts[-1].codomain
            # event axes of x: walk back from y's, each part needing at least its own
            dim = parts[-1].codomain_event_dim
            for t in reversed(parts):
                dim = max(dim + t.domain_event_dim - t.codomain_event_dim, t.domain_event_dim)
            self.domain_event_dim = dim
            for t in parts:
                dim = max(dim + t.codomain_event_dim - t.domain_event_dim, t.codomain_event_dim)
            self.codomain_event_dim = dim

    @property
    def sign(self):
        return int(np.prod([t.sign for t in self.parts]))

    def with_cache(self, cache_size=1):
        return self if cache_size == self._cache_size else ComposeTransform(self.parts, cache_size)

    def _call(self, x):
        for t in self.parts:
            x = t(x)
        return x

    def _inverse(self, y):
        for t in reversed(self.parts):
            y = t.inv(y)
        return y

    def log_abs_det_jacobian(self, x, y):
        if not self.parts:
            return Tensor(np.zeros(x.shape[: x.ndim - self.domain_event_dim], dtype=x.dtype))
        total, dim = 0.0, self.domain_event_dim
        for t in self.parts:
            x_next = t(x)
            total = total + sum_rightmost(t.log_abs_det_jacobian(x, x_next), dim - t.domain_event_dim)
            dim += t.codomain_event_dim - t.domain_event_dim
            x = x_next
        return total

    def forward_shape(self, shape):
        for t in self.parts:
            shape = t.forward_shape(shape)
        return tuple(shape)

    def inverse_shape(self, shape):
        for t in reversed(self.parts):
            shape = t.inverse_shape(shape)
        return tuple(shape)

    def _in_codomain(self, y):
        return self.parts[-1]._in_codomain(y) if self.parts else super()._in_codomain(y)

    def _codomain_point(self, y):
        return self.parts[-1]._codomain_point(y) if self.parts else 0.0

    def _key(self):
        return (self.parts,)

    def __repr__(self):
        return f"ComposeTransform({self.parts!r})"


def _event_dim(cls_name, n, name="event_dim"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{cls_name}: parameter '{name}' must be a non-negative integer; got {n!r}")
    return int(n)


def _data(p):
    return p.data if isinstance(p, Tensor) else p


def _is_number(p):
    return type(p) in (int, float)


def _as_tensor(p, name, cls_name="AffineTransform"):
    if isinstance(p, Tensor):
        return p if p.dtype.kind == "f" else ops.astype(p, np.float64)
    try:
        arr = np.asarray(p)
        arr = arr if arr.dtype.kind == "f" else arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{cls_name}: parameter '{name}' is not numeric: {p!r}") from None
    return Tensor(arr)

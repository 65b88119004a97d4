"""Bijective transforms for TransformedDistribution, with torch.distributions' conventions.

A transform ``t`` maps ``y = t(x)``; ``t.inv(y)`` maps back; ``t.log_abs_det_jacobian(x, y)``
is log |dy/dx|, elementwise (summed over the rightmost ``event_dim`` axes). Everything is
written with differentiable operations, so densities and draws through transforms are
differentiable to any order in the values and in the transform's parameters.

* ``ExpTransform``:        y = exp(x),            log|J| = x
* ``SigmoidTransform``:    y = 1 / (1 + e^-x),    log|J| = -softplus(-x) - softplus(x)
* ``TanhTransform``:       y = tanh(x),           log|J| = 2 (log 2 - x - softplus(-2x))
* ``AffineTransform``:     y = loc + scale x,     log|J| = log|scale|
* ``ComposeTransform``:    y = t_n(...t_1(x)),    log|J| = sum_i log|J_i| at the intermediate values
"""

import math

import numpy as np

from .. import ops
from ..tensor import Tensor
from .distribution import broadcast, check, clamp_keeping_gradient, keep_inside_unit_interval, sum_rightmost

LOG_2 = math.log(2.0)


class Transform:
    """Base class: ``y = t(x)``, ``x = t.inv(y)``, ``log_abs_det_jacobian(x, y)``.

    ``domain`` and ``codomain`` describe where x and y live; ``event_dim`` is the number
    of rightmost axes that the Jacobian couples (0 for elementwise transforms)."""

    domain = "the real numbers"
    codomain = "the real numbers"
    event_dim = 0
    sign = 1

    def __call__(self, x):
        return self._call(x if isinstance(x, Tensor) else Tensor(np.asarray(x)))

    @property
    def inv(self):
        """The inverse transform: ``t.inv(t(x)) == x``."""
        return _Inverse(self)

    def log_abs_det_jacobian(self, x, y):
        """log |dy/dx| at ``x`` (with ``y = t(x)``): shape of x without the event axes."""
        raise NotImplementedError(f"{type(self).__name__} does not implement log_abs_det_jacobian")

    def _call(self, x):
        raise NotImplementedError

    def _inverse(self, y):
        raise NotImplementedError

    def _in_codomain(self, y):
        """Boolean Tensor, elementwise (recorded: y may be a sample): y is a value the transform
        can produce. Here every value: a 0-d True that broadcasts against any y."""
        return Tensor(np.ones((), dtype=bool))

    def _codomain_point(self):
        """A value inside the codomain (to evaluate at in place of one outside it)."""
        return 0.0

    def __repr__(self):
        return f"{type(self).__name__}()"


class _Inverse(Transform):
    """``t.inv``: the transform with its directions swapped."""

    def __init__(self, transform):
        self._t = transform
        self.domain, self.codomain = transform.codomain, transform.domain
        self.event_dim = transform.event_dim
        self.sign = transform.sign

    @property
    def inv(self):
        return self._t

    def _call(self, y):
        return self._t._inverse(y)

    def _inverse(self, x):
        return self._t._call(x)

    def log_abs_det_jacobian(self, y, x):
        """log |dx/dy| = -log |dy/dx|."""
        return -self._t.log_abs_det_jacobian(x, y)

    def __repr__(self):
        return f"{self._t!r}.inv"


class ExpTransform(Transform):
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

    def _codomain_point(self):
        return 1.0


class SigmoidTransform(Transform):
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

    def _codomain_point(self):
        return 0.5


class TanhTransform(Transform):
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
    dtype of the value they meet."""

    def __init__(self, loc, scale, event_dim=0):
        self.loc, self.scale = (p if _is_number(p) else _as_tensor(p, n) for p, n in ((loc, "loc"), (scale, "scale")))
        for name, p in (("loc", self.loc), ("scale", self.scale)):
            t = p if isinstance(p, Tensor) else Tensor(np.asarray(p, dtype=np.float64))
            check("AffineTransform", name, t, np.isfinite(t.data), "finite")
        s = self.scale if isinstance(self.scale, Tensor) else Tensor(np.asarray(self.scale, dtype=np.float64))
        check("AffineTransform", "scale", s, s.data != 0, "nonzero")
        if isinstance(event_dim, bool) or not isinstance(event_dim, int) or event_dim < 0:
            raise ValueError(f"AffineTransform: parameter 'event_dim' must be a non-negative integer; got {event_dim!r}")
        self.event_dim = event_dim
        sign = np.sign(s.data)
        self.sign = int(sign.flat[0]) if sign.size and (sign == sign.flat[0]).all() else 0  # 0: mixed

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

    def __repr__(self):
        return f"AffineTransform(loc={self.loc!r}, scale={self.scale!r})"


class ComposeTransform(Transform):
    """``parts`` applied in order: y = parts[-1](...parts[0](x)). Its ``event_dim`` is the
    largest of the parts'; each part's log|J| is summed over the extra axes."""

    def __init__(self, parts):
        parts = list(parts)
        for i, t in enumerate(parts):
            if not isinstance(t, Transform):
                raise ValueError(f"ComposeTransform: parameter 'parts' must hold Transforms; item {i} is {type(t).__name__}")
        self.parts = parts
        self.event_dim = max((t.event_dim for t in parts), default=0)
        self.sign = int(np.prod([t.sign for t in parts])) if parts else 1
        if parts:
            self.domain, self.codomain = parts[0].domain, parts[-1].codomain

    def _call(self, x):
        for t in self.parts:
            x = t(x)
        return x

    def _inverse(self, y):
        for t in reversed(self.parts):
            y = t.inv(y)
        return y

    def log_abs_det_jacobian(self, x, y):
        total = 0.0
        for t in self.parts:
            x_next = t(x)
            total = total + sum_rightmost(t.log_abs_det_jacobian(x, x_next), self.event_dim - t.event_dim)
            x = x_next
        return total

    def _in_codomain(self, y):
        return self.parts[-1]._in_codomain(y) if self.parts else super()._in_codomain(y)

    def __repr__(self):
        return f"ComposeTransform({self.parts!r})"


def _is_number(p):
    return type(p) in (int, float)


def _as_tensor(p, name):
    if isinstance(p, Tensor):
        return p if p.dtype.kind == "f" else ops.astype(p, np.float64)
    try:
        arr = np.asarray(p)
        arr = arr if arr.dtype.kind == "f" else arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"AffineTransform: parameter '{name}' is not numeric: {p!r}") from None
    return Tensor(arr)

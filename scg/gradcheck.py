"""Numerical gradient checking: analytic VJPs against central finite differences.

For ``f`` with inputs ``x_i`` and a random output weighting ``v``, the scalar
``s(x) = sum(f(x) * v)`` has gradient ``grad_i`` from the reverse pass; each
entry is compared with ``(s(x + eps e_k) - s(x - eps e_k)) / (2 eps)``. Order 2
applies the same check to the function ``x -> grad s(x)`` built with
``create_graph=True``, and so on for higher orders.
"""

import numpy as np

from .autodiff import grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


def _flat_output(fn, xs):
    out = fn(*xs)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [o if isinstance(o, Tensor) else Tensor(o) for o in outs]


def _check_first_order(fn, inputs, eps, atol, rtol, rng, label):
    xs = [Tensor(x.data.copy(), requires_grad=True) for x in inputs]
    outs = _flat_output(fn, xs)
    vs = [rng.standard_normal(o.shape) for o in outs]
    analytic = grad(outs, xs, grad_outputs=[Tensor(v) for v in vs])

    def s(values):
        with_vals = [Tensor(v) for v in values]
        return sum(float(np.sum(o.data * v)) for o, v in zip(_flat_output(fn, with_vals), vs))

    base = [x.data.copy() for x in xs]
    for i, x in enumerate(base):
        numeric = np.zeros_like(x)
        for k in range(x.size):
            hi = [b.copy() for b in base]
            lo = [b.copy() for b in base]
            hi[i].flat[k] += eps
            lo[i].flat[k] -= eps
            numeric.flat[k] = (s(hi) - s(lo)) / (2 * eps)
        a = analytic[i].data
        if a.shape != x.shape:
            raise GradcheckError(f"{label}: gradient for input {i} has shape {a.shape}, expected {x.shape}")
        err = np.abs(a - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            k = int(np.argmax(err - rtol * np.abs(numeric)))
            raise GradcheckError(
                f"{label}: input {i} (shape {x.shape}) disagrees with finite differences at flat "
                f"index {k}: analytic {a.flat[k]:.8g}, numeric {numeric.flat[k]:.8g} "
                f"(max abs error {err.max():.3g}, atol {atol}, rtol {rtol})"
            )


def gradcheck(fn, inputs, order=1, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Check the derivatives of ``fn(*inputs)`` up to ``order`` against finite differences.

    ``fn`` maps Tensors to a Tensor (or a list of Tensors) of any shape.
    ``inputs`` are float64 arrays or Tensors (float32 is too coarse for finite
    differences and is rejected). Returns True, or raises ``GradcheckError``
    describing the first disagreement.
    """
    inputs = [x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in inputs]
    for i, x in enumerate(inputs):
        if x.dtype != np.float64:
            raise ValueError(f"gradcheck needs float64 inputs; input {i} has dtype {x.dtype}")
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    rng = np.random.default_rng(seed)
    f = fn
    for n in range(1, order + 1):
        _check_first_order(f, inputs, eps, atol, rtol, rng, f"order {n}")
        if n < order:
            f = _differentiated(f, rng)
    return True


def _differentiated(fn, rng):
    """The function ``xs -> grad(sum(fn(xs) * v), xs)`` for a fixed random ``v``,
    recorded so that it can itself be differentiated."""
    weights = {}

    def dfn(*xs):
        outs = _flat_output(fn, xs)
        if "v" not in weights:
            weights["v"] = [rng.standard_normal(o.shape) for o in outs]
        live = [x for x in xs if x.requires_grad]
        if not live:
            # Finite-difference evaluation: only values are needed, on fresh leaves.
            xs = [Tensor(x.data, requires_grad=True) for x in xs]
            outs = _flat_output(fn, xs)
        return grad(outs, list(xs), grad_outputs=[Tensor(v) for v in weights["v"]], create_graph=True)

    return dfn

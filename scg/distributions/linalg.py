"""Two differentiable linear-algebra primitives for the multivariate families:
the Cholesky factor and the solve with a lower-triangular matrix.

Both act on the last two axes and broadcast over the leading (batch) axes. Their VJPs
are written with differentiable operations (matmul, transposes, triangular solves and
constant masks), so derivatives of any order exist.

* ``solve_triangular(L, B)`` = L^{-1} B (``transpose=True``: L^{-T} B), L lower triangular:
  for X = L^{-1} B, B_bar = L^{-T} G and L_bar = -tril(B_bar X^T);
  for X = L^{-T} B, B_bar = L^{-1} G and L_bar = -tril(X B_bar^T).
* ``cholesky(A)`` = L with A = L L^T, A symmetric positive definite (Murray 2016,
  "Differentiation of the Cholesky decomposition"): with P = Phi(L^T L_bar), Phi taking
  the lower triangle with the diagonal halved, S = L^{-T} P L^{-1} and A_bar = (S + S^T) / 2
  (the gradient of a function of the symmetric matrix A).
"""

import numpy as np
import scipy.linalg

from .. import ops
from ..autodiff import primitive
from ..ops import unbroadcast


def _mT(x):
    return ops.swapaxes(x, -1, -2)


def _tril_mask(n, dtype, diagonal=1.0):
    """Constant lower-triangular mask of ones, ``diagonal`` on the diagonal."""
    mask = np.tril(np.ones((n, n), dtype=dtype))
    np.fill_diagonal(mask, diagonal)
    return mask


def _solve_triangular_forward(L, B, transpose):
    if L.ndim < 2 or L.shape[-1] != L.shape[-2]:
        raise ValueError(f"L must be a batch of square matrices, got shape {L.shape}")
    if B.ndim < 2 or B.shape[-2] != L.shape[-1]:
        raise ValueError(f"B must have {L.shape[-1]} rows, got shape {B.shape}")
    batch = np.broadcast_shapes(L.shape[:-2], B.shape[:-2])
    dtype = np.result_type(L.dtype, B.dtype)
    Lb = np.broadcast_to(L, batch + L.shape[-2:]).reshape((-1,) + L.shape[-2:])
    Bb = np.broadcast_to(B, batch + B.shape[-2:]).reshape((-1,) + B.shape[-2:])
    out = np.empty(Bb.shape, dtype=dtype)
    for i in range(Lb.shape[0]):
        out[i] = scipy.linalg.solve_triangular(Lb[i], Bb[i], lower=True, trans=1 if transpose else 0,
                                               check_finite=False)
    return out.reshape(batch + B.shape[-2:])


def _solve_vjp_L(g, ans, L, B, transpose):
    mask = _tril_mask(L.shape[-1], L.dtype)
    b_bar = _solve(L, g, transpose=not transpose)
    outer = ops.matmul(ans, _mT(b_bar)) if transpose else ops.matmul(b_bar, _mT(ans))
    return unbroadcast(-(outer * mask), L.shape)


def _solve_vjp_B(g, ans, L, B, transpose):
    return unbroadcast(_solve(L, g, transpose=not transpose), B.shape)


_solve = primitive("solve_triangular", _solve_triangular_forward, _solve_vjp_L, _solve_vjp_B)


def solve_triangular(L, B, transpose=False):
    """X = L^{-1} B (or L^{-T} B with ``transpose``) for lower-triangular L (..., n, n)
    and B (..., n, k); batch axes broadcast. Only L's lower triangle is read."""
    return _solve(L, B, transpose=bool(transpose))


def _cholesky_forward(A):
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        raise ValueError("matrix is not positive definite") from None


def _cholesky_vjp(g, ans, A):
    n = A.shape[-1]
    P = ops.matmul(_mT(ans), g) * _tril_mask(n, A.dtype, 0.5)  # Phi(L^T L_bar)
    S = solve_triangular(ans, _mT(solve_triangular(ans, P, transpose=True)), transpose=True)  # L^-T P L^-1
    return 0.5 * (S + _mT(S))


_cholesky = primitive("cholesky", _cholesky_forward, _cholesky_vjp)


def cholesky(A):
    """Lower-triangular L with A = L L^T for symmetric positive-definite A (..., n, n);
    ``ValueError`` when A is not positive definite."""
    return _cholesky(A)


def diagonal(M):
    """The diagonal of the last two axes, (..., n, n) -> (..., n) (differentiable)."""
    n = M.shape[-1]
    idx = np.arange(n)
    return ops.getitem(M, (Ellipsis, idx, idx))

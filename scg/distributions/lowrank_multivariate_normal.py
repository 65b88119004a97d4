"""LowRankMultivariateNormal(loc, cov_factor, cov_diag): Gaussian on R^n with covariance
Sigma = W W^T + D, W = ``cov_factor`` (..., n, r), D = diag(``cov_diag``) (..., n), in
O(n r^2) instead of O(n^3).

With the capacitance C = I_r + W^T D^{-1} W = L_C L_C^T (Woodbury and the matrix
determinant lemma):

    x^T Sigma^{-1} x = |u*|^2 + (x - W u*)^T D^{-1} (x - W u*),  u* = C^{-1} W^T D^{-1} x
                     (= x^T D^{-1} x - |L_C^{-1} W^T D^{-1} x|^2, which cancels),
    log det Sigma    = 2 sum_i log (L_C)_ii + sum_j log D_j.

``rsample`` is loc + W eps_1 + sqrt(D) eps_2, eps_1 ~ N(0, I_r), eps_2 ~ N(0, I_n).
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import broadcast, check, check_positive, untyped
from .linalg import _mT, cholesky, diagonal, solve_triangular
from .multivariate_normal import GaussianBase, event_params


class LowRankMultivariateNormal(GaussianBase):
    """Gaussian with mean ``loc`` (..., n) and covariance cov_factor cov_factor^T +
    diag(cov_diag); cov_diag > 0. event_shape = (n,); the batch shape broadcasts
    loc.shape[:-1], cov_factor.shape[:-2] and cov_diag.shape[:-1]."""

    arg_constraints = {"loc": constraints.real_vector, "cov_factor": constraints.independent(constraints.real, 2),
                       "cov_diag": constraints.independent(constraints.positive, 1)}

    def __init__(self, loc, cov_factor, cov_diag, validate_args=None):
        name = "LowRankMultivariateNormal"
        (self.loc, self.cov_factor, self.cov_diag), dtype = event_params(
            name, loc=loc, cov_factor=cov_factor, cov_diag=cov_diag
        )
        if self.loc.ndim < 1:
            raise ValueError(f"{name}: parameter 'loc' must have at least one axis (the event); got shape ()")
        n = self.loc.shape[-1]
        if self.cov_factor.ndim < 2 or self.cov_factor.shape[-2] != n:
            raise ValueError(f"{name}: parameter 'cov_factor' must have shape (..., {n}, rank); got {self.cov_factor.shape}")
        if self.cov_diag.ndim < 1 or self.cov_diag.shape[-1] != n:
            raise ValueError(f"{name}: parameter 'cov_diag' must have shape (..., {n}); got {self.cov_diag.shape}")
        check(name, "loc", self.loc, np.isfinite(self.loc.data), "finite")
        check(name, "cov_factor", self.cov_factor, np.isfinite(self.cov_factor.data), "finite")
        check_positive(name, "cov_diag", self.cov_diag)
        try:
            batch = np.broadcast_shapes(self.loc.shape[:-1], self.cov_factor.shape[:-2], self.cov_diag.shape[:-1])
        except ValueError:
            raise ValueError(
                f"{name}: parameter shapes do not broadcast: loc {self.loc.shape}, "
                f"cov_factor {self.cov_factor.shape}, cov_diag {self.cov_diag.shape}"
            ) from None
        self._untyped = untyped(loc=loc, cov_factor=cov_factor, cov_diag=cov_diag)
        super().__init__(batch, (n,), dtype, validate_args)
        W, d = self.cov_factor, self.cov_diag
        rank = W.shape[-1]
        self._wt_dinv = _mT(W) / ops.expand_dims(d, -2)  # W^T D^{-1}, (..., r, n)
        capacitance = ops.matmul(self._wt_dinv, W) + np.eye(rank, dtype=dtype)
        self._capacitance_tril = cholesky(capacitance)

    def _half_log_det(self):
        """log det(Sigma) / 2 by the matrix determinant lemma."""
        return ops.sum(ops.log(diagonal(self._capacitance_tril)), axis=-1) + 0.5 * ops.sum(ops.log(self.cov_diag), axis=-1)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        rng = self._rng(rng)
        rank = self.cov_factor.shape[-1]
        eps_w = rng.standard_normal(shape[:-1] + (rank, 1), dtype=self.dtype)
        eps_d = rng.standard_normal(shape, dtype=self.dtype)
        return self.loc + ops.squeeze(ops.matmul(self.cov_factor, eps_w), -1) + ops.sqrt(self.cov_diag) * eps_d

    def _mahalanobis(self, diff):
        # Woodbury's difference |D^{-1/2} x|^2 - |L_C^{-1} W^T D^{-1} x|^2 cancels when W W^T >> D
        # (negative, -9.4 for -11.4, at W = 1e8, D = 1e-8). With x = W u + e, u ~ N(0, I),
        # e ~ N(0, D), the distance is instead the minimum over u of |u|^2 + |D^{-1/2}(x - W u)|^2,
        # reached at u* = C^{-1} W^T D^{-1} x: a sum of two non-negative terms, no cancellation
        # between them; the residual's rounding costs ~eps^2 cond(Sigma) relative, not eps cond.
        b = ops.matmul(self._wt_dinv, ops.expand_dims(diff, -1))
        u = solve_triangular(self._capacitance_tril, solve_triangular(self._capacitance_tril, b), transpose=True)
        resid = diff - ops.squeeze(ops.matmul(self.cov_factor, u), -1)
        return ops.sum(ops.squeeze(u, -1) ** 2, axis=-1) + ops.sum(resid * resid / self.cov_diag, axis=-1)

    @property
    def variance(self):
        return broadcast(ops.sum(self.cov_factor ** 2, axis=-1) + self.cov_diag, self.batch_shape + self.event_shape)

    @property
    def covariance_matrix(self):
        """W W^T + diag(D), shape batch_shape + (n, n)."""
        n = self.event_shape[0]
        W = self.cov_factor
        cov = ops.matmul(W, _mT(W)) + ops.expand_dims(self.cov_diag, -1) * np.eye(n, dtype=self.dtype)
        return broadcast(cov, self.batch_shape + (n, n))

    @property
    def precision_matrix(self):
        """D^{-1} - A^T A with A = L_C^{-1} W^T D^{-1} (Woodbury), shape batch_shape + (n, n)."""
        n = self.event_shape[0]
        a = solve_triangular(self._capacitance_tril, self._wt_dinv)
        prec = ops.expand_dims(1 / self.cov_diag, -1) * np.eye(n, dtype=self.dtype) - ops.matmul(_mT(a), a)
        return broadcast(prec, self.batch_shape + (n, n))

    @property
    def scale_tril(self):
        """The Cholesky factor of the covariance (O(n^3)), shape batch_shape + (n, n)."""
        return cholesky(self.covariance_matrix)

"""LKJCholesky(dim, concentration): Cholesky factors L of LKJ(eta)-distributed correlation matrices.

The LKJ law (Lewandowski, Kurowicka & Joe 2009) has density proportional to det(C)^(eta - 1)
over d x d correlation matrices C = L L^T. As torch does, the density is over L's entries
below the diagonal: row i (0-based, i >= 1) of L is a point u = L[i, :i] of the unit ball
B^i with L[i, i] = sqrt(1 - |u|^2), and

    log p(L) = sum_{i=1}^{d-1} (d - i - 3 + 2 eta) log L[i, i] - log Z,
    log Z = sum_{i=1}^{d-1} [ (i/2) log pi + lgamma(eta + (d - i - 1)/2) - lgamma(eta + (d - 1)/2) ],

from int_{B^m} (1 - |u|^2)^c du = pi^(m/2) Gamma(c + 1) / Gamma(c + 1 + m/2). The rows are
independent, so a sample draws each one directly (the onion method): |u|^2 ~
Beta(i/2, eta + (d - i - 1)/2) and u / |u| uniform on the sphere. No ``rsample`` (as torch).
"""

import math

import numpy as np

from .. import ops
from ..tensor import Tensor
from . import constraints
from .distribution import Distribution, check_positive, follows_value_dtype, outside_is_impossible, params, untyped

LOG_PI = math.log(math.pi)


class LKJCholesky(Distribution):
    """LKJ distribution over Cholesky factors of ``dim`` x ``dim`` correlation matrices, with
    ``concentration`` eta > 0 (batch shape its shape; event shape (dim, dim))."""

    support = constraints.corr_cholesky
    arg_constraints = {"concentration": constraints.positive}

    def __init__(self, dim, concentration=1.0, validate_args=None):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
            raise ValueError(f"LKJCholesky: parameter 'dim' must be an integer >= 2; got {dim!r}")
        (self.concentration,), shape, dtype = params("LKJCholesky", concentration=concentration)
        check_positive("LKJCholesky", "concentration", self.concentration)
        self.dim = int(dim)
        super().__init__(shape, (self.dim, self.dim), dtype, validate_args)
        self._untyped = untyped(concentration=concentration)

    def _follow(self, other):
        """As every family's (Python-number parameters take a float value's dtype), keeping ``dim``."""
        dtype = getattr(other, "dtype", None)
        if self._untyped is None or dtype is None or np.dtype(dtype).kind != "f" or dtype == self.dtype:
            return self
        return LKJCholesky(self.dim, np.asarray(self._untyped["concentration"], dtype=dtype), self._validate)

    def sample(self, sample_shape=(), rng=None):
        rng, d = self._rng(rng), self.dim
        shape = self._extended_shape(sample_shape)[:-2]
        eta = np.broadcast_to(self.concentration.data, shape).astype(np.float64)
        # Row by row, joined by concatenate and stack (not written into a zeros array), so that a
        # traced step records how the rows come from the draws and replays them.
        rows = [np.broadcast_to(np.eye(d)[0], shape + (d,))]
        for i in range(1, d):
            y = rng.beta(i / 2, eta + (d - i - 1) / 2)  # |u|^2
            direction = rng.standard_normal(shape + (i,))
            direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
            rows.append(np.concatenate([np.sqrt(y)[..., None] * direction, np.sqrt(1 - y)[..., None],
                                        np.zeros(shape + (d - i - 1,))], axis=-1))
        return Tensor(np.stack(rows, axis=-2).astype(self.dtype))

    def _log_normalizer(self):
        d, eta = self.dim, self.concentration
        total = 0.0
        for i in range(1, d):
            total = total + (i / 2) * LOG_PI + ops.lgamma(eta + (d - i - 1) / 2) - ops.lgamma(eta + (d - 1) / 2)
        return total

    @follows_value_dtype
    def log_prob(self, value):
        L = self._value(value)
        d = self.dim
        if L.shape[-2:] != (d, d):
            raise ValueError(f"LKJCholesky.log_prob: value must end in ({d}, {d}); got shape {L.shape}")
        diag = ops.getitem(L, (Ellipsis, np.arange(d), np.arange(d)))  # (..., d)
        inside = self._support(L, self.support.check(L))
        safe_diag = ops.where(ops.greater(diag, 0), diag, 1.0)
        log_diag = ops.getitem(ops.log(safe_diag), (Ellipsis, slice(1, None)))  # rows 1 .. d-1
        exponents = np.array([d - i - 3.0 for i in range(1, d)], dtype=L.dtype)
        eta = ops.expand_dims(self.concentration, -1)
        lp = ops.sum((exponents + 2 * eta) * log_diag, axis=-1) - self._log_normalizer()
        return outside_is_impossible(inside, lp)

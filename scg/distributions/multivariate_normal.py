"""MultivariateNormal(loc, covariance_matrix=None, precision_matrix=None, scale_tril=None).

With Sigma = L L^T (L lower triangular, positive diagonal) and n = event size:
log p(x) = -(n log 2 pi + |L^{-1}(x - loc)|^2) / 2 - sum_i log L_ii,
entropy n (1 + log 2 pi) / 2 + sum_i log L_ii; ``rsample`` is loc + L eps, eps ~ N(0, I).

A precision matrix P is factored without inverting it: with J the order-reversing
permutation, J P J = L_f L_f^T gives P = U U^T for the upper-triangular U = J L_f J,
so Sigma = P^{-1} = U^{-T} U^{-1} and L = U^{-T} = (J L_f^T J)^{-1}.
"""

import math

import numpy as np

from .. import ops
from . import constraints
from .distribution import Distribution, broadcast, check, follows_value_dtype, params, untyped
from .kl import register_kl
from .linalg import _mT, cholesky, diagonal, solve_triangular

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def event_params(cls_name, **named):
    """As :func:`params` (float Tensors of one dtype, NaN refused), for parameters whose
    shapes differ by their event axes and so need not broadcast with each other.
    Returns (list of Tensors, dtype)."""
    converted = [params(cls_name, **{k: v})[0][0] for k, v in named.items()]
    typed = [t.dtype for (k, v), t in zip(named.items(), converted) if untyped(**{k: v}) is None]
    dtype = np.result_type(*typed) if typed else np.dtype(np.float64)
    return [t if t.dtype == dtype else ops.astype(t, dtype) for t in converted], dtype


def check_square(cls_name, name, m, n=None):
    """Raise ``ValueError`` naming the parameter unless ``m`` is (..., n, n)."""
    if m.ndim < 2 or m.shape[-1] != m.shape[-2] or (n is not None and m.shape[-1] != n):
        want = "(..., n, n)" if n is None else f"(..., {n}, {n})"
        raise ValueError(f"{cls_name}: parameter '{name}' must have shape {want}; got {m.shape}")


def check_symmetric(cls_name, name, m):
    """Raise ``ValueError`` naming the parameter unless ``m`` is symmetric (to rounding)."""
    tol = 64 * np.finfo(m.dtype).eps * np.maximum(np.abs(m.data).max(axis=(-2, -1), keepdims=True), 1)
    if not np.all(np.abs(m.data - np.swapaxes(m.data, -1, -2)) <= tol):
        raise ValueError(f"{cls_name}: parameter '{name}' must be symmetric")


def factor(cls_name, name, m):
    """The Cholesky factor of the positive-definite parameter ``m`` (ValueError naming it otherwise)."""
    check_symmetric(cls_name, name, m)
    try:
        return cholesky(m)
    except ValueError:
        raise ValueError(f"{cls_name}: parameter '{name}' must be positive definite") from None


def one_matrix(cls_name, covariance_matrix, precision_matrix, scale_tril):
    """``(name, matrix)`` of the one matrix parameter given (MultivariateNormal, Wishart);
    ValueError unless exactly one is."""
    given = {k: v for k, v in (("covariance_matrix", covariance_matrix), ("precision_matrix", precision_matrix),
                               ("scale_tril", scale_tril)) if v is not None}
    if len(given) != 1:
        raise ValueError(
            f"{cls_name}: give exactly one of 'covariance_matrix', 'precision_matrix' and 'scale_tril' "
            f"(got {', '.join(given) or 'none'})"
        )
    (key, matrix), = given.items()
    return key, matrix


def scale_tril_of(cls_name, key, m, dtype):
    """L with Sigma = L L^T from the square matrix parameter ``m`` named ``key``: checked as
    given (scale_tril), factored (covariance_matrix), or, for a precision matrix P, L = U^{-T}
    from P = U U^T, the Cholesky factor of J P J (J reverses the order)."""
    if key == "scale_tril":
        if np.any(np.triu(m.data, 1) != 0):
            raise ValueError(f"{cls_name}: parameter 'scale_tril' must be lower triangular")
        diag = diagonal(m)
        check(cls_name, "scale_tril", diag, diag.data > 0, "positive on its diagonal")
        return m
    if key == "covariance_matrix":
        return factor(cls_name, key, m)
    flip = (Ellipsis, slice(None, None, -1), slice(None, None, -1))
    lf = factor(cls_name, key, ops.getitem(m, flip))
    eye = np.broadcast_to(np.eye(m.shape[-1], dtype=dtype), m.shape)
    return solve_triangular(ops.getitem(_mT(lf), flip), eye)


class GaussianBase(Distribution):
    """What every Gaussian on R^n shares, given ``_mahalanobis(x - loc)`` (the squared
    distance under Sigma^{-1}, shape (...)) and ``_half_log_det()`` (log det Sigma / 2)."""

    has_rsample = True
    support = constraints.real_vector

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        n = self.event_shape[0]
        if x.ndim == 0 or x.shape[-1] != n:
            raise ValueError(
                f"{type(self).__name__}.log_prob: value must have n = {n} on its last axis; got shape {x.shape}"
            )
        # An infinite coordinate would meet 0 * inf = NaN in the triangular solve: solve with
        # 0 there instead and put the distance, inf, back (log p = -inf, as in one dimension).
        diff = x - self.loc
        infinite = ops.equal(ops.abs(diff), np.inf)
        maha = self._mahalanobis(ops.where(infinite, 0.0, diff))
        far = ops.any(infinite, axis=-1)
        maha = ops.where(far, np.inf, maha)
        return -0.5 * maha - n * HALF_LOG_2PI - self._half_log_det()

    def entropy(self):
        n = self.event_shape[0]
        return broadcast(n * (0.5 + HALF_LOG_2PI) + self._half_log_det(), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc, self.batch_shape + self.event_shape)

    @property
    def mode(self):
        return self.mean


class MultivariateNormal(GaussianBase):
    """Gaussian on R^n with mean ``loc`` (..., n) and exactly one of ``covariance_matrix``,
    ``precision_matrix`` (both symmetric positive definite) or ``scale_tril`` (lower
    triangular, positive diagonal), each (..., n, n). event_shape = (n,);
    batch_shape broadcasts loc's and the matrix's leading axes."""

    arg_constraints = {"loc": constraints.real_vector, "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite, "scale_tril": constraints.lower_cholesky}

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None):
        name = "MultivariateNormal"
        key, matrix = one_matrix(name, covariance_matrix, precision_matrix, scale_tril)
        (self.loc, m), dtype = event_params(name, loc=loc, **{key: matrix})
        if self.loc.ndim < 1:
            raise ValueError(f"{name}: parameter 'loc' must have at least one axis (the event); got shape ()")
        n = self.loc.shape[-1]
        check_square(name, key, m, n)
        check(name, "loc", self.loc, np.isfinite(self.loc.data), "finite")
        check(name, key, m, np.isfinite(m.data), "finite")
        self._scale_tril = scale_tril_of(name, key, m, dtype)
        self._given = (key, m)
        self._untyped = untyped(loc=loc, **{key: matrix})
        try:
            batch = np.broadcast_shapes(self.loc.shape[:-1], m.shape[:-2])
        except ValueError:
            raise ValueError(
                f"{name}: parameter shapes do not broadcast: loc {self.loc.shape}, {key} {m.shape}"
            ) from None
        super().__init__(batch, (n,), dtype, validate_args)

    # ---- parameters in every form ---------------------------------------------
    @property
    def scale_tril(self):
        """L with Sigma = L L^T, shape batch_shape + (n, n)."""
        return broadcast(self._scale_tril, self.batch_shape + self.event_shape * 2)

    @property
    def covariance_matrix(self):
        key, m = self._given
        if key == "covariance_matrix":
            return broadcast(m, self.batch_shape + self.event_shape * 2)
        L = self._scale_tril
        return broadcast(ops.matmul(L, _mT(L)), self.batch_shape + self.event_shape * 2)

    @property
    def precision_matrix(self):
        key, m = self._given
        if key == "precision_matrix":
            return broadcast(m, self.batch_shape + self.event_shape * 2)
        n = self.event_shape[0]
        inv = solve_triangular(self._scale_tril, np.eye(n, dtype=self.dtype))  # L^{-1}
        return broadcast(ops.matmul(_mT(inv), inv), self.batch_shape + self.event_shape * 2)

    def _half_log_det(self):
        """log det(Sigma) / 2 = sum_i log L_ii, shape of L's batch."""
        return ops.sum(ops.log(diagonal(self._scale_tril)), axis=-1)

    # ---- the distribution -----------------------------------------------------------
    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        eps = self._rng(rng).standard_normal(shape, dtype=self.dtype)
        return self.loc + ops.squeeze(ops.matmul(self._scale_tril, eps[..., None]), -1)

    def _mahalanobis(self, diff):
        z = solve_triangular(self._scale_tril, ops.expand_dims(diff, -1))
        return ops.sum(ops.squeeze(z, -1) ** 2, axis=-1)

    @property
    def variance(self):
        return broadcast(ops.sum(self._scale_tril ** 2, axis=-1), self.batch_shape + self.event_shape)


def kl_gaussian(loc_p, tril_p, loc_q, tril_q):
    """KL(N(loc_p, L_p L_p^T) || N(loc_q, L_q L_q^T)) =
    (|L_q^{-1} L_p|_F^2 + |L_q^{-1}(loc_q - loc_p)|^2 - n) / 2 + sum log diag L_q - sum log diag L_p."""
    n = loc_p.shape[-1]
    a = solve_triangular(tril_q, tril_p)
    trace = ops.sum(ops.sum(a * a, axis=-1), axis=-1)
    diff = solve_triangular(tril_q, ops.expand_dims(loc_q - loc_p, -1))
    maha = ops.sum(ops.squeeze(diff, -1) ** 2, axis=-1)
    half_log_det_q = ops.sum(ops.log(diagonal(tril_q)), axis=-1)
    half_log_det_p = ops.sum(ops.log(diagonal(tril_p)), axis=-1)
    return 0.5 * (trace + maha - n) + half_log_det_q - half_log_det_p


@register_kl(GaussianBase, GaussianBase)
def _kl_gaussian_gaussian(p, q):
    # every pair of MultivariateNormal and LowRankMultivariateNormal, through Cholesky factors
    return kl_gaussian(p.loc, _tril(p), q.loc, _tril(q))


def _tril(d):
    """The Cholesky factor of a (low-rank) multivariate normal's covariance, unbroadcast."""
    return d._scale_tril if hasattr(d, "_scale_tril") else d.scale_tril

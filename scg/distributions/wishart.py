"""Wishart(df, covariance_matrix=None, precision_matrix=None, scale_tril=None): p x p random
symmetric positive-definite matrices W = sum_k x_k x_k^T, x_k ~ N(0, Sigma), for real df > p - 1.

With Sigma = L L^T, a value X = L_X L_X^T and log Gamma_p(a) = p(p-1)/4 log pi + sum_{j<p} lgamma(a - j/2),

    log p(X) = (df - p - 1)/2 log det X - tr(Sigma^{-1} X)/2 - df p/2 log 2 - df/2 log det Sigma
               - log Gamma_p(df/2),

where log det X = 2 sum_i log (L_X)_ii and tr(Sigma^{-1} X) = |L^{-1} L_X|_F^2. The value is
symmetrised, (X + X^T)/2, before it is factored, so log_prob is a function of every entry
(its gradient is symmetric) and finite-difference checks agree with it.

Entropy (p+1)/2 log det Sigma + p(p+1)/2 log 2 + log Gamma_p(df/2) - (df-p-1)/2 psi_p(df/2) + df p/2,
psi_p(a) = sum_{j<p} digamma(a - j/2). Moments: mean df Sigma, variance df (Sigma_ij^2 + Sigma_ii Sigma_jj),
mode (df - p - 1) Sigma where df > p + 1 (NaN otherwise, as torch).

``rsample`` by the Bartlett decomposition: W = (L A)(L A)^T with A lower triangular,
A_ii = sqrt(c_i), c_i ~ Chi2(df - i) = 2 Gamma((df - i)/2, 1) (i = 0..p-1, implicitly
reparameterized, so df gets a gradient), A_ij ~ N(0, 1) below the diagonal. Draws are never
corrected: for df close to p - 1, Chi2(df - p + 1) puts visible mass below eps times the other
terms (at df - p + 1 = 0.3, about 0.1% of draws in float64), and such a W is singular to working
precision (log_prob -inf; ValueError under validation). torch resamples those with a warning.
"""

import math

import numpy as np

from .. import ops
from . import constraints
from .distribution import Distribution, broadcast, check, follows_value_dtype, outside_is_impossible, untyped
from .gamma import rsample_standard_gamma
from .linalg import _mT, cholesky, diagonal, solve_triangular
from .multivariate_normal import check_square, event_params, one_matrix, scale_tril_of

LOG_2 = math.log(2.0)
LOG_PI = math.log(math.pi)


def mvlgamma(a, p):
    """log Gamma_p(a) = p(p-1)/4 log pi + sum_{j=0}^{p-1} lgamma(a - j/2), elementwise in ``a``."""
    half_j = np.arange(p, dtype=a.dtype) / 2
    return p * (p - 1) / 4 * LOG_PI + ops.sum(ops.lgamma(ops.expand_dims(a, -1) - half_j), axis=-1)


def mvdigamma(a, p):
    """psi_p(a) = sum_{j=0}^{p-1} digamma(a - j/2), the derivative of log Gamma_p, elementwise in ``a``."""
    half_j = np.arange(p, dtype=a.dtype) / 2
    return ops.sum(ops.digamma(ops.expand_dims(a, -1) - half_j), axis=-1)


def is_positive_definite(x):
    """Boolean Tensor (recorded, no gradient), shape x.shape[:-2]: ``x`` (..., p, p) is symmetric
    (to 64 eps of its largest entry, as ``constraints.positive_definite``) and every pivot of its
    symmetric elimination (the squared diagonal of its Cholesky factor) is positive. Written
    with recorded operations so that a graph sees that it depends on a sampled value."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and 0 / 0 are outside, not warnings
        return _positive_pivots(x)


def _positive_pivots(x):
    p = x.shape[-1]
    eps = float(np.finfo(x.dtype).eps)
    scale = ops.maximum(ops.max(ops.abs(x), axis=(-2, -1), keepdims=True), 1.0)
    ok = ops.all(ops.less_equal(ops.abs(x - _mT(x)), 64 * eps * scale), axis=(-2, -1))
    a = 0.5 * (x + _mT(x))
    for k in range(p):
        pivot = ops.getitem(a, (Ellipsis, k, k))
        positive = ops.greater(pivot, 0)  # False at NaN too
        ok = ok & positive
        if k + 1 < p:
            col = ops.getitem(a, (Ellipsis, slice(None), slice(k, k + 1)))  # (..., p, 1)
            safe = ops.expand_dims(ops.expand_dims(ops.where(positive, pivot, 1.0), -1), -1)
            a = a - ops.matmul(col, _mT(col)) / safe  # the Schur complement in the trailing block
    return ok


class Wishart(Distribution):
    """Wishart with ``df`` > p - 1 degrees of freedom (batch shape its shape) and scale given by
    exactly one of ``covariance_matrix`` Sigma, ``precision_matrix`` Sigma^{-1} (both symmetric
    positive definite) or ``scale_tril`` L (lower triangular, positive diagonal, Sigma = L L^T),
    each (..., p, p). batch_shape broadcasts df's shape and the matrix's leading axes;
    event_shape = (p, p)."""

    has_rsample = True
    support = constraints.positive_definite
    #: df's constraint, greater_than(p - 1), is set per instance (it depends on p), as torch's
    arg_constraints = {"df": constraints.greater_than(0.0),
                       "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite, "scale_tril": constraints.lower_cholesky}

    def __init__(self, df, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None):
        name = "Wishart"
        key, matrix = one_matrix(name, covariance_matrix, precision_matrix, scale_tril)
        (self.df, m), dtype = event_params(name, df=df, **{key: matrix})
        check_square(name, key, m)
        p = m.shape[-1]
        check(name, key, m, np.isfinite(m.data), "finite")
        check(name, "df", self.df, np.isfinite(self.df.data), "finite")
        check(name, "df", self.df, self.df.data > p - 1, f"greater than p - 1 = {p - 1}")
        self._scale_tril = scale_tril_of(name, key, m, dtype)
        self._given = (key, m)
        self._untyped = untyped(df=df, **{key: matrix})
        try:
            batch = np.broadcast_shapes(self.df.shape, m.shape[:-2])
        except ValueError:
            raise ValueError(
                f"{name}: parameter shapes do not broadcast: df {self.df.shape}, {key} {m.shape}"
            ) from None
        self.arg_constraints = dict(Wishart.arg_constraints, df=constraints.greater_than(p - 1))
        super().__init__(batch, (p, p), dtype, validate_args)

    # ---- parameters in every form ---------------------------------------------
    def _matrix_shape(self):
        return self.batch_shape + self.event_shape

    @property
    def scale_tril(self):
        """L with Sigma = L L^T, shape batch_shape + (p, p)."""
        return broadcast(self._scale_tril, self._matrix_shape())

    @property
    def covariance_matrix(self):
        key, m = self._given
        if key == "covariance_matrix":
            return broadcast(m, self._matrix_shape())
        return broadcast(self._sigma(), self._matrix_shape())

    @property
    def precision_matrix(self):
        key, m = self._given
        if key == "precision_matrix":
            return broadcast(m, self._matrix_shape())
        inv = solve_triangular(self._scale_tril, np.eye(self.event_shape[0], dtype=self.dtype))  # L^{-1}
        return broadcast(ops.matmul(_mT(inv), inv), self._matrix_shape())

    def _sigma(self):
        """Sigma, unbroadcast (the matrix's own batch axes)."""
        key, m = self._given
        return m if key == "covariance_matrix" else ops.matmul(self._scale_tril, _mT(self._scale_tril))

    def _df(self):
        """df with two trailing axes, to multiply matrices."""
        return ops.expand_dims(ops.expand_dims(self.df, -1), -1)

    def _log_det_sigma(self):
        return 2 * ops.sum(ops.log(diagonal(self._scale_tril)), axis=-1)

    # ---- the distribution -----------------------------------------------------------
    def rsample(self, sample_shape=(), rng=None):
        rng, p = self._rng(rng), self.event_shape[0]
        shape = self._extended_shape(sample_shape)[:-2]
        half_dfs = (ops.expand_dims(broadcast(self.df, self.batch_shape), -1) - np.arange(p, dtype=self.dtype)) / 2
        chi2 = 2 * rsample_standard_gamma(half_dfs, shape + (p,), rng)  # c_i ~ Chi2(df - i)
        below = np.tril(np.ones((p, p), dtype=self.dtype), -1)
        noise = rng.standard_normal(shape + (p, p)).astype(self.dtype) * below
        a = ops.expand_dims(ops.sqrt(chi2), -1) * np.eye(p, dtype=self.dtype) + noise
        la = ops.matmul(self._scale_tril, a)
        w = ops.matmul(la, _mT(la))
        return 0.5 * (w + _mT(w))  # exactly symmetric

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        p = self.event_shape[0]
        if x.ndim < 2 or x.shape[-2:] != (p, p):
            raise ValueError(f"Wishart.log_prob: value must end in ({p}, {p}); got shape {x.shape}")
        inside = self._support(x, is_positive_definite(x))
        if not inside.data.all():  # factor the identity instead where the value is outside
            x = ops.where(ops.expand_dims(ops.expand_dims(inside, -1), -1), x, np.eye(p, dtype=x.dtype))
        x = 0.5 * (x + _mT(x))
        lx = cholesky(x)
        log_det_x = 2 * ops.sum(ops.log(diagonal(lx)), axis=-1)
        a = solve_triangular(self._scale_tril, lx)  # L^{-1} L_X
        trace = ops.sum(ops.sum(a * a, axis=-1), axis=-1)  # tr(Sigma^{-1} X)
        df = self.df
        lp = (0.5 * (df - p - 1) * log_det_x - 0.5 * trace - (0.5 * p * LOG_2) * df
              - 0.5 * df * self._log_det_sigma() - mvlgamma(0.5 * df, p))
        return outside_is_impossible(inside, lp)

    def entropy(self):
        p, df = self.event_shape[0], self.df
        h = ((p + 1) / 2 * self._log_det_sigma() + p * (p + 1) / 2 * LOG_2 + mvlgamma(0.5 * df, p)
             - 0.5 * (df - p - 1) * mvdigamma(0.5 * df, p) + 0.5 * p * df)
        return broadcast(h, self.batch_shape)

    @property
    def mean(self):
        return broadcast(self._df() * self._sigma(), self._matrix_shape())

    @property
    def variance(self):
        s = self._sigma()
        d = diagonal(s)
        return broadcast(self._df() * (s * s + ops.expand_dims(d, -1) * ops.expand_dims(d, -2)), self._matrix_shape())

    @property
    def mode(self):
        """(df - p - 1) Sigma where df > p + 1; NaN where there is no mode (as torch)."""
        factor_ = self._df() - (self.event_shape[0] + 1)
        factor_ = ops.where(ops.greater(factor_, 0), factor_, np.nan)
        return broadcast(factor_ * self._sigma(), self._matrix_shape())

"""StudentT(df, loc=0, scale=1): Student's t with ``df`` degrees of freedom, location, scale.

With nu = df and z = (x - loc) / scale:

    log p(x) = lgamma((nu+1)/2) - lgamma(nu/2) - log(sqrt(nu pi) scale) - (nu+1)/2 log(1 + z^2/nu),
    H = (nu+1)/2 (digamma((nu+1)/2) - digamma(nu/2)) + log(sqrt(nu) B(nu/2, 1/2) scale).

Mean loc for nu > 1 (NaN otherwise); variance scale^2 nu/(nu-2) for nu > 2, inf for
1 < nu <= 2, NaN for nu <= 1 (as torch.distributions).

``rsample``: x = loc + scale * Z / sqrt(G/nu) with Z ~ N(0, 1) and G ~ chi^2(nu) = 2 Gamma(nu/2, 1),
the Gamma drawn in log space by :func:`~scg.distributions.gamma.rsample_log_standard_gamma`
(implicit reparameterization), so the draw is differentiable in df, loc and scale to any order.
"""

import math

import numpy as np

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check, check_positive, follows_value_dtype, log_beta, params, untyped,
)
from .gamma import rsample_log_standard_gamma
from .stable import half_lgamma_ratio, log1p_square

LOG_2 = math.log(2.0)
HALF_LOG_PI = 0.5 * math.log(math.pi)


class StudentT(Distribution):
    """Student's t with ``df > 0``, location ``loc`` and ``scale > 0`` (broadcast together)."""

    has_rsample = True
    arg_constraints = {"df": constraints.positive, "loc": constraints.real, "scale": constraints.positive}

    def __init__(self, df, loc=0.0, scale=1.0, validate_args=None):
        (self.df, self.loc, self.scale), shape, dtype = params("StudentT", df=df, loc=loc, scale=scale)
        self._untyped = untyped(df=df, loc=loc, scale=scale)
        check_positive("StudentT", "df", self.df)
        check_positive("StudentT", "scale", self.scale)
        check("StudentT", "loc", self.loc, np.isfinite(self.loc.data), "finite")
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape, rng = self._extended_shape(sample_shape), self._rng(rng)
        z = rng.standard_normal(shape, dtype=self.dtype)
        df = broadcast(self.df, self.batch_shape)
        log_g = rsample_log_standard_gamma(0.5 * df, shape, rng)  # chi^2(df) = 2 Gamma(df/2, 1)
        inv_sqrt = ops.exp(-0.5 * (log_g + LOG_2 - ops.log(df)))  # 1 / sqrt(chi^2 / df)
        return self.loc + self.scale * z * inv_sqrt

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        nu = self.df
        z = (x - self.loc) / self.scale
        # lgamma((nu+1)/2) - lgamma(nu/2) - log(nu)/2 = half_lgamma_ratio(nu/2) - log(2)/2: the
        # direct difference of lgammas ~nu log nu had the wrong sign at nu = 1e15.
        return (
            half_lgamma_ratio(0.5 * nu)
            - 0.5 * LOG_2
            - HALF_LOG_PI
            - ops.log(self.scale)
            - 0.5 * (nu + 1) * log1p_square(z, ops.sqrt(nu))  # z^2 / nu overflows in the far tails
        )

    def entropy(self):
        nu = self.df
        half = 0.5 * nu
        log_b = log_beta(ops.stack([half, np.full(half.shape, 0.5, half.dtype)], axis=-1))  # log B(nu/2, 1/2)
        h = (half + 0.5) * (ops.digamma(half + 0.5) - ops.digamma(half)) + 0.5 * ops.log(nu) + log_b
        return broadcast(h + ops.log(self.scale), self.batch_shape)

    @property
    def mean(self):
        return broadcast(ops.where(self.df > 1, self.loc, np.nan), self.batch_shape)

    @property
    def variance(self):
        nu = self.df
        finite = nu > 2
        v = self.scale * self.scale * nu / ops.where(finite, nu - 2, 1)
        v = ops.where(finite, v, ops.astype(ops.where(nu > 1, np.inf, np.nan), self.dtype))
        return broadcast(v, self.batch_shape)

    @property
    def mode(self):
        return broadcast(self.loc, self.batch_shape)

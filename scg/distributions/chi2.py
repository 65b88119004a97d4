"""Chi2(df): the sum of df squared standard normals, Gamma(df / 2, rate 1/2).

Everything Gamma has (log_prob, entropy, mean df, variance 2 df, implicitly reparameterized
``rsample``, its KL divergences) with concentration df / 2 and rate 1/2; besides, mode
max(df - 2, 0) and cdf P(df / 2, x / 2) (the regularized incomplete gamma function,
differentiable in df too). torch's Chi2 has no icdf, nor has this one.
"""

import numpy as np

from .. import ops
from . import constraints
from .distribution import broadcast, check_positive, params, untyped
from .gamma import Gamma, gammainc


class Chi2(Gamma):
    """Chi-squared with ``df > 0`` degrees of freedom (not necessarily an integer)."""

    arg_constraints = {"df": constraints.positive}

    def __init__(self, df, validate_args=None):
        (df_,), _, dtype = params("Chi2", df=df)
        check_positive("Chi2", "df", df_)  # before Gamma's checks, which would name 'concentration'
        super().__init__(0.5 * df_, np.asarray(0.5, dtype=dtype), validate_args)
        self._untyped = untyped(df=df)

    @property
    def df(self):
        return self.concentration * 2

    def cdf(self, value):
        x, inside = self._cdf_value(value)
        return ops.where(inside, gammainc(self.concentration, ops.where(inside, x, 0) * 0.5), 0)

    @property
    def mode(self):
        return broadcast(ops.maximum(self.df - 2, 0), self.batch_shape)

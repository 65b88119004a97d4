"""LogNormal(loc, scale): y = exp(x) with x ~ Normal(loc, scale).

Density exp(-(log y - loc)^2 / (2 scale^2)) / (y scale sqrt(2 pi)) for y > 0, computed
as a TransformedDistribution of Normal by ExpTransform (the change of variables in one
place). Entropy loc + 1/2 + log(scale sqrt(2 pi)); mean exp(loc + scale^2/2); variance
(exp(scale^2) - 1) exp(2 loc + scale^2). ``rsample``: exp(loc + scale * eps).
"""

from .. import ops
from . import constraints
from .distribution import broadcast, follows_value_dtype, untyped
from .kl import kl_divergence, register_kl
from .normal import Normal
from .transformed_distribution import TransformedDistribution
from .transforms import ExpTransform


class LogNormal(TransformedDistribution):
    """Log-normal: ``log y ~ Normal(loc, scale)`` with ``scale > 0`` (broadcast together)."""

    has_rsample = True
    support = constraints.positive.described("y > 0")
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}

    def __init__(self, loc, scale, validate_args=None):
        base = Normal(loc, scale, validate_args=validate_args)
        super().__init__(base, ExpTransform(), validate_args=validate_args)
        self._untyped = untyped(loc=loc, scale=scale)
        self.loc, self.scale = base.loc, base.scale

    def entropy(self):
        return self.base_dist.entropy() + broadcast(self.loc, self.batch_shape)

    @property
    def mean(self):
        return broadcast(ops.exp(self.loc + 0.5 * self.scale * self.scale), self.batch_shape)

    @property
    def variance(self):
        s2 = self.scale * self.scale
        return broadcast(ops.expm1(s2) * ops.exp(2 * self.loc + s2), self.batch_shape)

    @property
    def mode(self):
        """exp(loc - scale^2)."""
        return broadcast(ops.exp(self.loc - self.scale * self.scale), self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """Phi((log y - loc) / scale) for y > 0, 0 below."""
        y, inside = self._cdf_value(value)
        return ops.where(inside, self.base_dist.cdf(ops.log(ops.where(inside, y, 1))), 0)

    @follows_value_dtype
    def icdf(self, value):
        """exp(loc + scale Phi^-1(p))."""
        return ops.exp(self.base_dist.icdf(self._level(value)))


@register_kl(LogNormal, LogNormal)
def _kl_lognormal_lognormal(p, q):
    return kl_divergence(p.base_dist, q.base_dist)  # KL is invariant under the bijection exp

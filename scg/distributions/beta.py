"""Beta(concentration1, concentration0): density x^(a-1) (1-x)^(b-1) / B(a, b) on [0, 1].

With a = concentration1, b = concentration0 and log B(a, b) = lgamma(a) + lgamma(b)
- lgamma(a + b): entropy log B(a, b) - (a-1) psi(a) - (b-1) psi(b) + (a+b-2) psi(a+b),
mean a/(a+b), variance ab / ((a+b)^2 (a+b+1)).

``rsample``: x = G1 / (G1 + G0) = sigmoid(log G1 - log G0) with G1 ~ Gamma(a, 1),
G0 ~ Gamma(b, 1) drawn in log space by
:func:`~scg.distributions.gamma.rsample_log_standard_gamma` (so small concentrations,
whose Gammas underflow, still give the right ratio), implicitly reparameterized and
differentiable in a and b to any order.
"""

from .. import ops
from . import constraints
from .distribution import (
    Distribution, broadcast, check_positive, follows_value_dtype, keep_inside_unit_interval, log_beta,
    outside_is_impossible, params, untyped,
)
from .dirichlet import dirichlet_mode
from .exponential import Exponential, gamma_expected_log_density
from .gamma import Gamma, rsample_log_standard_gamma
from .kl import infinite, register_kl
from .stable import LOADER_MIN, deviance, lgamma_shift, log_factorial_rest


class Beta(Distribution):
    """Beta with ``concentration1`` a > 0 and ``concentration0`` b > 0 (mean a/(a+b))."""

    has_rsample = True
    support = constraints.unit_interval
    arg_constraints = {"concentration1": constraints.positive, "concentration0": constraints.positive}

    def __init__(self, concentration1, concentration0, validate_args=None):
        (self.concentration1, self.concentration0), shape, dtype = params(
            "Beta", concentration1=concentration1, concentration0=concentration0
        )
        self._untyped = untyped(concentration1=concentration1, concentration0=concentration0)
        for name, t in (("concentration1", self.concentration1), ("concentration0", self.concentration0)):
            check_positive("Beta", name, t)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape, rng = self._extended_shape(sample_shape), self._rng(rng)
        log_g1 = rsample_log_standard_gamma(broadcast(self.concentration1, self.batch_shape), shape, rng)
        log_g0 = rsample_log_standard_gamma(broadcast(self.concentration0, self.batch_shape), shape, rng)
        x = ops.sigmoid(log_g1 - log_g0)
        # Small concentrations put much mass within rounding of 0 and 1: keep every draw
        # inside, with the gradient of G1 / (G1 + G0).
        return keep_inside_unit_interval(x)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, (x >= 0) & (x <= 1))
        x = ops.where(inside, x, 0.5)
        a, b = self.concentration1, self.concentration0
        # xlogy makes 0 * log 0 = 0, so x = 0 (or 1) gives 0 for a = 1 (b = 1), +inf below, -inf above.
        # log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b) with the larger argument's pair
        # taken as one stable difference (Beta(1e15, 1) was 2.5 off); symmetric in a and b.
        a_big = ops.greater(a, b)
        hi, lo = ops.where(a_big, a, b), ops.where(a_big, b, a)
        log_b = ops.lgamma(lo) - lgamma_shift(hi, lo)
        # (b - 1) log1p(-x): log(1 - x) would lose a tiny x's digits (0.1% at b = 1e15, x = 1e-15);
        # xlogy only at x = 1, for its 0 log 0 = 0 and +-inf.
        at_one = ops.equal(x, 1.0)
        log_q = ops.where(at_one, ops.xlogy(b - 1, 1 - x), (b - 1) * ops.log1p(-ops.where(at_one, 0.0, x)))
        lp = ops.xlogy(a - 1, x) + log_q - log_b
        # For a, b both large these terms are ~a log a and cancel (22.75 for 17.39 at 1e15,
        # 5e-9 off already at 1e8): there the density is (n + 1) Binomial(a - 1; n, x) with
        # n = a + b - 2, in Loader's form (real-valued counts are fine in it).
        big = ops.greater(ops.minimum(a, b), LOADER_MIN)
        a1, b1 = ops.where(big, a - 1, LOADER_MIN), ops.where(big, b - 1, LOADER_MIN)
        xb = ops.where(big, x, 0.5)
        n = a1 + b1
        loader = (
            ops.log1p(n) + log_factorial_rest(n) - log_factorial_rest(a1) - log_factorial_rest(b1)
            - deviance(a1, n * xb) - deviance(b1, n * (1 - xb))
        )
        return outside_is_impossible(inside, ops.where(big, loader, lp))

    def _log_beta(self):
        """log B(a, b), shape batch_shape."""
        pair = [broadcast(t, self.batch_shape) for t in (self.concentration1, self.concentration0)]
        return log_beta(ops.stack(pair, axis=-1))

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        h = (
            self._log_beta()
            - (a - 1) * ops.digamma(a)
            - (b - 1) * ops.digamma(b)
            + (a + b - 2) * ops.digamma(a + b)
        )
        return broadcast(h, self.batch_shape)

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return broadcast(a / (a + b), self.batch_shape)

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        total = a + b
        return broadcast(a * b / (total * total * (total + 1)), self.batch_shape)

    @property
    def mode(self):
        """(a - 1) / (a + b - 2) for a, b >= 1 (NaN at a = b = 1); with an exponent below one
        the density is unbounded at that end: 0 or 1 (1 when a, b < 1 and a >= b), as torch."""
        a, b = (broadcast(t, self.batch_shape) for t in (self.concentration1, self.concentration0))
        return ops.getitem(dirichlet_mode(ops.stack([a, b], axis=-1)), (Ellipsis, 0))


@register_kl(Beta, Beta)
def _kl_beta_beta(p, q):
    # log B(a2, b2) - log B(a1, b1) + (a1 - a2) psi(a1) + (b1 - b2) psi(b1) + (a2 - a1 + b2 - b1) psi(a1 + b1)
    a1, b1, a2, b2 = p.concentration1, p.concentration0, q.concentration1, q.concentration0
    return (
        q._log_beta()
        - p._log_beta()
        + (a1 - a2) * ops.digamma(a1)
        + (b1 - b2) * ops.digamma(b1)
        + (a2 - a1 + b2 - b1) * ops.digamma(a1 + b1)
    )


def beta_mean_log(p):
    """E[log x] and E[log(1 - x)] for x ~ Beta(a, b): psi(a) - psi(a + b), psi(b) - psi(a + b)."""
    a, b = p.concentration1, p.concentration0
    return ops.digamma(a) - ops.digamma(a + b), ops.digamma(b) - ops.digamma(a + b)


@register_kl(Beta, Gamma)
def _kl_beta_gamma(p, q):
    return -p.entropy() - gamma_expected_log_density(q, p.mean, beta_mean_log(p)[0])


@register_kl(Beta, Exponential)
def _kl_beta_exponential(p, q):
    return -p.entropy() - ops.log(q.rate) + q.rate * p.mean


@register_kl(Gamma, Beta)
@register_kl(Exponential, Beta)
def _kl_unbounded_beta(p, q):
    return infinite(p, q)  # p puts mass above 1

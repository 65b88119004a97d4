"""Gamma(concentration, rate) and the implicitly reparameterized standard Gamma sample.

Density: b^a x^(a-1) e^(-b x) / Gamma(a) for x > 0.

Samples are drawn as log z: for a < 1, log G(a) = log G(a + 1) + log(U) / a with
U ~ Uniform(0, 1), which stays exact where z itself underflows (Gamma(1e-3) puts half
its mass below 1e-308). Beta and Dirichlet normalise these log-Gammas, so their ratios
stay right at small concentrations.

Implicit reparameterization (Figurnov, Mohamed & Mnih 2018): a sample z of
Gamma(a, 1) with CDF F(z; a) = P(a, z) moves with a as ``dz/da = -(dF/da)(z; a) / p(z; a)``,
so ``d log z / da = -(dF/da) / (z p)``, computed two ways, both free of e^(-z) factors:

* z <= 4: the series ``P(a, z) = sum_n exp((a + n) log z - z - lgamma(a + n + 1))`` gives

      d log z/da = -sum_n exp(n log z + lgamma(a) - lgamma(a + n + 1)) * (log z - digamma(a + n + 1));

* z > 4 (the series would need about z + 10 sqrt(z) terms, and above the median its
  terms cancel, losing a factor ~e^z to rounding): with t = z e^s in
  dF/da = int_0^z (log t - digamma(a)) p(t; a) dt (and its complement over [z, inf)),

      d log z/da = +int_0^inf  (log z + s - digamma(a)) exp(a s - z (e^s - 1)) ds   if log z >= digamma(a),
      d log z/da = -int_-inf^0 (log z + s - digamma(a)) exp(a s - z (e^s - 1)) ds   otherwise,

  whose integrands keep one sign (no cancellation) and decay on a scale of at most
  1 / sqrt(z); 32-point Gauss-Legendre over the range where the exponent is above -46
  is accurate to ~1e-12 relative (checked against mpmath for a from 1e-3 to 1e6).

Both are written with differentiable operations, and the primitive passes its own
output ``log z`` to them, so second and higher derivatives through a Gamma sample are
exact too. Memory is O(n * 54) for n samples, whatever their size.
"""

import numpy as np
import scipy.special as sp

from .. import ops
from . import constraints
from ..autodiff import primitive
from ..ops import unbroadcast
from .distribution import (
    Distribution, broadcast, check_positive, clamp_keeping_gradient, follows_value_dtype, outside_is_impossible,
    params, untyped,
)
from .kl import register_kl
from .stable import LOADER_MIN, deviance, log_factorial_rest

SERIES_MAX_Z = 4.0  # above it, quadrature: the series grows long and cancels (error ~ eps e^z)
_SERIES_TERMS = int(np.ceil(SERIES_MAX_Z + 10.0 * np.sqrt(SERIES_MAX_Z) + 30.0))  # float64 rounding level
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_LOG_CUTOFF = 46.0  # exp(-46) = 1e-20: the integrand is negligible beyond


def _series(a, log_z):
    """d log z/da by the series (accurate for z <= SERIES_MAX_Z); a, log_z float64 Tensors."""
    n = np.arange(_SERIES_TERMS, dtype=np.float64)
    a_n = ops.expand_dims(a, -1) + (n + 1)  # a + n + 1, shape z.shape + (N,)
    log_z_ = ops.expand_dims(log_z, -1)
    log_w = n * log_z_ + ops.expand_dims(ops.lgamma(a), -1) - ops.lgamma(a_n)
    return -ops.sum(ops.exp(log_w) * (log_z_ - ops.digamma(a_n)), axis=-1)


def _span(a, z, upper):
    """r > 0 where a s - z (e^s - 1) = -46 at s = r (upper) or s = -r (lower); float64 arrays.

    Newton's method from a start beyond the root (from e^s - 1 >= s + s^2/2 for s >= 0,
    and a s - z (e^s - 1) <= z - a|s| for s <= 0): the exponent is concave in r, so every
    step stays beyond the root and the iterates decrease to it."""
    sign = np.where(upper, 1.0, -1.0)
    d = np.abs(a - z)
    r = np.where(upper, 2 * _LOG_CUTOFF / (d + np.sqrt(d * d + 2 * z * _LOG_CUTOFF)), (_LOG_CUTOFF + z) / a)
    for _ in range(30):
        s = sign * r
        r = r - (a * s - z * np.expm1(s) + _LOG_CUTOFF) / (sign * (a - z * np.exp(s)))
    return r


def _quadrature(a, log_z):
    """d log z/da by Gauss-Legendre quadrature of the integrals above (for z > SERIES_MAX_Z)."""
    z = ops.exp(log_z)
    gap = log_z - ops.digamma(a)
    upper = gap.data >= 0
    # The nodes are constants for differentiation: the integrand vanishes at the far end,
    # so moving it changes nothing.
    sign = np.where(upper, 1.0, -1.0)
    half = sign * _span(a.data, z.data, upper) / 2
    s = half[..., None] * (_NODES + 1)  # shape z.shape + (32,)
    a_, z_, gap_ = ops.expand_dims(a, -1), ops.expand_dims(z, -1), ops.expand_dims(gap, -1)
    integrand = (gap_ + s) * ops.exp(a_ * s - z_ * np.expm1(s))
    return ops.sum(integrand * _WEIGHTS, axis=-1) * half


def log_gamma_sample_grad(alpha, log_z):
    """d log z / d alpha for z ~ Gamma(alpha, 1), elementwise, given log z (alpha broadcasts
    to its shape). Computed in float64 and returned in log_z's dtype; differentiable in
    alpha and log_z to any order."""
    dtype = log_z.dtype
    a = ops.astype(broadcast(alpha, log_z.shape), np.float64)
    log_z = ops.astype(log_z, np.float64)
    small = log_z.data <= np.log(SERIES_MAX_Z)
    # Each branch sees only values it handles (others replaced by safe ones), so
    # neither value nor gradient of the unused branch can be inf or NaN.
    series = _series(a, ops.where(small, log_z, 0.0))
    quad = _quadrature(a, ops.where(small, np.log(2 * SERIES_MAX_Z), log_z))
    return ops.astype(ops.where(small, series, quad), dtype)


def gamma_sample_grad(alpha, z):
    """dz/dalpha = z * d log z/dalpha for z ~ Gamma(alpha, 1), elementwise (z > 0)."""
    return z * log_gamma_sample_grad(alpha, ops.log(z))


log_standard_gamma = primitive(
    "log_standard_gamma",
    lambda alpha, log_sample: log_sample,
    lambda g, ans, alpha, log_sample: unbroadcast(g * log_gamma_sample_grad(alpha, ans), alpha.shape),
)
log_standard_gamma.__doc__ = """The given log of a Gamma(alpha, 1) draw, ``log_sample``, as a
function of ``alpha``, differentiable by implicit reparameterization."""


def rsample_log_standard_gamma(alpha, shape, rng):
    """log z for a Gamma(alpha, 1) draw z of ``shape`` (alpha broadcasts to it), differentiable
    in alpha. Exact where z underflows: for alpha < 1, log G(alpha + 1) + log(U) / alpha."""
    a = np.broadcast_to(alpha.data, shape).astype(np.float64)
    boost = a < 1
    log_z = np.log(rng.standard_gamma(np.where(boost, a + 1, a), size=shape))
    if boost.any():  # (no extra draws otherwise, so alpha >= 1 streams are unchanged)
        log_z += np.where(boost, np.log1p(-rng.random(shape)) / a, 0.0)  # log U, U in (0, 1]
    return log_standard_gamma(alpha, log_sample=log_z.astype(alpha.dtype))


def rsample_standard_gamma(alpha, shape, rng):
    """A Gamma(alpha, 1) draw of ``shape`` (alpha broadcasts to it), differentiable in alpha.

    Draws below the smallest positive normal number are raised to it (by a constant,
    keeping the gradient), so that log z stays finite (small alpha puts much mass there).
    """
    z = ops.exp(rsample_log_standard_gamma(alpha, shape, rng))
    return clamp_keeping_gradient(z, low=np.finfo(z.dtype).tiny)


def _gammainc_vjp_a(g, ans, a, x):
    # dP/da at (a, x) is -x p(x; a) (d log z / da at z = x), the implicit gradient's numerator.
    a_, x_ = (broadcast(t, ans.shape) for t in (a, x))
    inside = (x_.data > 0) & (x_.data < np.inf)  # P is 0 at x = 0 and 1 at x = inf, whatever a
    xs = ops.where(inside, x_, 1.0)
    log_x = ops.log(xs)
    d = -ops.exp(a_ * log_x - xs - ops.lgamma(a_)) * log_gamma_sample_grad(a_, log_x)
    return unbroadcast(g * ops.where(inside, d, 0.0), a.shape)


def _gammainc_vjp_x(g, ans, a, x):
    # dP/dx = p(x; a) = x^(a-1) e^(-x) / Gamma(a)
    a_, x_ = (broadcast(t, ans.shape) for t in (a, x))
    return unbroadcast(g * ops.exp(ops.xlogy(a_ - 1, x_) - x_ - ops.lgamma(a_)), x.shape)


def _keeping_dtype(fn):
    return lambda a, x: np.asarray(fn(a, x), dtype=np.result_type(a, x))


gammainc = primitive("gammainc", _keeping_dtype(sp.gammainc), _gammainc_vjp_a, _gammainc_vjp_x)
gammainc.__doc__ = """P(a, x) = int_0^x t^(a-1) e^(-t) dt / Gamma(a), the CDF of Gamma(a, 1) at x >= 0,
differentiable in both (in a through the implicit gradient above, to any order)."""

gammaincc = primitive("gammaincc", _keeping_dtype(sp.gammaincc), lambda g, ans, a, x: _gammainc_vjp_a(-g, ans, a, x),
                      lambda g, ans, a, x: _gammainc_vjp_x(-g, ans, a, x))
gammaincc.__doc__ = """Q(a, x) = 1 - P(a, x), computed directly (no cancellation where P is near 1)."""


class Gamma(Distribution):
    """Gamma with shape ``concentration`` (a > 0) and ``rate`` (b > 0): mean a/b.

    ``rsample`` is implicitly reparameterized (differentiable in both parameters,
    to any order).
    """

    has_rsample = True
    support = constraints.nonnegative
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}

    def __init__(self, concentration, rate, validate_args=None):
        (self.concentration, self.rate), shape, dtype = params(
            "Gamma", concentration=concentration, rate=rate
        )
        self._untyped = untyped(concentration=concentration, rate=rate)
        check_positive("Gamma", "concentration", self.concentration)
        check_positive("Gamma", "rate", self.rate)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        z = rsample_standard_gamma(broadcast(self.concentration, self.batch_shape), shape, self._rng(rng))
        return z / self.rate

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, x >= 0)
        # x = inf is the end of the support, where the density is 0 (as scipy says);
        # evaluating there would give (a - 1) log x - b x = inf - inf = NaN.
        finite = inside & (x < np.inf)
        safe_x = x if finite.data.all() else ops.where(finite, x, 1)
        a, b = self.concentration, self.rate
        lp = a * ops.log(b) + ops.xlogy(a - 1, safe_x) - b * safe_x - ops.lgamma(a)
        # At large a those terms are ~a log a and cancel (16.0 for 16.35 at a = b = 1e15): there
        # the density is b times a Poisson pmf, log b + log Poisson(a - 1; b x), in Loader's form.
        big = ops.greater(a, LOADER_MIN)
        a1 = ops.where(big, a - 1, LOADER_MIN)
        loader = ops.log(b) - deviance(a1, b * safe_x) - log_factorial_rest(a1)
        return outside_is_impossible(finite, ops.where(big, loader, lp))

    def entropy(self):
        a, b = self.concentration, self.rate
        return broadcast(a - ops.log(b) + ops.lgamma(a) + (1 - a) * ops.digamma(a), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.concentration / self.rate, self.batch_shape)

    @property
    def variance(self):
        return broadcast(self.concentration / (self.rate * self.rate), self.batch_shape)

    @property
    def mode(self):
        """(a - 1) / b for a >= 1, else 0 (where the density is largest, or infinite)."""
        return broadcast(ops.maximum(self.concentration - 1, 0) / self.rate, self.batch_shape)

    @follows_value_dtype
    def cdf(self, value):
        """P(a, b x), the regularized lower incomplete gamma function, for x >= 0; 0 below."""
        x, inside = self._cdf_value(value)
        return ops.where(inside, gammainc(self.concentration, self.rate * ops.where(inside, x, 0)), 0)


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p, q):
    # (a1 - a2) psi(a1) - lgamma(a1) + lgamma(a2) + a2 (log b1 - log b2) + a1 (b2 - b1) / b1
    a1, b1, a2, b2 = p.concentration, p.rate, q.concentration, q.rate
    return (
        (a1 - a2) * ops.digamma(a1)
        - ops.lgamma(a1)
        + ops.lgamma(a2)
        + a2 * (ops.log(b1) - ops.log(b2))
        + a1 * (b2 - b1) / b1
    )

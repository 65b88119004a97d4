"""VonMises(loc, concentration): the circular normal, density exp(k cos(x - loc)) / (2 pi I0(k)).

With k = concentration and A(k) = I1(k) / I0(k): log-density k (cos(x - loc) - 1) - log(2 pi)
- log i0e(k) (i0e(k) = e^-k I0(k), finite where I0 overflows); mean and mode loc, variance
the circular variance 1 - A(k) (as torch), entropy log(2 pi i0e(k)) + k (1 - A(k)).

Samples: theta ~ VonMises(0, k) by Best & Fisher's (1979) rejection algorithm (wrapped
Cauchy envelope; its parameter computed without the cancellation of the textbook form at
small k), x = loc + theta wrapped into [-pi, pi) as torch's samples are.

``rsample`` (torch has none) is implicitly reparameterized (Figurnov, Mohamed & Mnih 2018)
as gamma.py's draws are: with F(theta; k) = int_-pi^theta p, dtheta/dk = -(dF/dk) / p(theta),
and since dp/dk = p (cos t - A(k)) integrates to 0 over the circle,

    dtheta/dk = sign(theta) int_|theta|^pi (cos t - A(k)) exp(k (cos t - cos theta)) dt,

whose exponent is <= 0 (no overflow at any k). 32-point Gauss-Legendre over [|theta|, t_max],
t_max where the exponent reaches -46 (cos t_max = cos theta - 46 / k) or pi, written with
differentiable operations of k and of the draw itself, so second and higher derivatives
through a draw are exact too. dx/dloc = 1.
"""

import math

import numpy as np

from .. import ops
from ..autodiff import primitive
from ..ops import unbroadcast
from ..trace import unreplayable
from . import constraints
from .distribution import (
    Distribution, broadcast, check, check_positive, follows_value_dtype, outside_is_impossible, params, untyped,
)

LOG_2PI = math.log(2 * math.pi)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_LOG_CUTOFF = 46.0  # exp(-46) = 1e-20: the integrand is negligible beyond


def log_i0(k):
    """log I0(k) for k >= 0, as log i0e(k) + k."""
    return ops.log(ops.i0e(k)) + k


def bessel_ratio(k):
    """A(k) = I1(k) / I0(k) = d log I0 / dk."""
    return ops.i1e(k) / ops.i0e(k)


def angle_grad(k, theta):
    """dtheta/dk for theta ~ VonMises(0, k), elementwise (see the module docstring); computed
    in float64, returned in theta's dtype, differentiable in k and theta to any order."""
    dtype = theta.dtype
    k = ops.astype(broadcast(k, theta.shape), np.float64)
    theta = ops.astype(theta, np.float64)
    a = ops.abs(theta)
    # The lower end is |theta| (differentiable); the upper end t_max is a constant for
    # differentiation: either pi, which is fixed, or a point where the integrand is negligible
    # (moving it changes nothing).
    t_max = np.arccos(np.maximum(np.cos(a.data) - _LOG_CUTOFF / k.data, -1.0))
    half = (t_max - a) / 2
    t = ops.expand_dims(a, -1) + ops.expand_dims(half, -1) * (_NODES + 1)  # shape theta.shape + (32,)
    k_, cos_a = ops.expand_dims(k, -1), ops.expand_dims(ops.cos(a), -1)
    integrand = (ops.cos(t) - ops.expand_dims(bessel_ratio(k), -1)) * ops.exp(k_ * (ops.cos(t) - cos_a))
    grad = ops.sum(integrand * _WEIGHTS, axis=-1) * half * np.sign(theta.data)
    return ops.astype(grad, dtype)


von_mises_angle = primitive(
    "von_mises_angle",
    lambda concentration, angle: angle,
    lambda g, ans, concentration, angle: unbroadcast(g * angle_grad(concentration, ans), concentration.shape),
)
von_mises_angle.__doc__ = """The given draw ``angle`` of VonMises(0, concentration) as a function
of the concentration, differentiable by implicit reparameterization."""


def sample_standard_angle(k, rng):
    """theta ~ VonMises(0, k) for every element of the float64 array ``k`` (Best & Fisher 1979)."""
    unreplayable("VonMises draws by rejection (how many uniforms it draws depends on the draws)")
    s = np.sqrt(1 + 4 * k * k)
    tau = 1 + s
    # rho = (tau - sqrt(2 tau)) / (2k), rewritten: tau - 2 = 4k^2 / (s + 1) cancels no digits.
    rho = 2 * k * tau / ((s + 1) * (tau + np.sqrt(2 * tau)))
    r = (1 + rho * rho) / (2 * rho)
    theta = np.empty(k.shape)
    pending = np.ones(k.shape, dtype=bool)
    while pending.any():
        n, kp, rp = pending.sum(), k[pending], r[pending]
        u1, u2, u3 = (1 - rng.random(n) for _ in range(3))  # in (0, 1]: log(c / u2) stays finite
        z = np.cos(np.pi * u1)
        f = np.clip((1 + rp * z) / (rp + z), -1.0, 1.0)
        c = kp * (rp - f)
        accept = (c * (2 - c) - u2 > 0) | (np.log(c / u2) + 1 - c >= 0)
        idx = np.flatnonzero(pending)[accept]
        theta.flat[idx] = np.sign(u3[accept] - 0.5) * np.arccos(f[accept])
        pending.flat[idx] = False
    return theta


class VonMises(Distribution):
    """Von Mises with location ``loc`` (finite) and ``concentration`` k > 0 (broadcast together)."""

    has_rsample = True
    support = constraints.real.described("the real numbers (angles: the density has period 2 pi)")
    arg_constraints = {"loc": constraints.real, "concentration": constraints.positive}

    def __init__(self, loc, concentration, validate_args=None):
        (self.loc, self.concentration), shape, dtype = params("VonMises", loc=loc, concentration=concentration)
        self._untyped = untyped(loc=loc, concentration=concentration)
        check("VonMises", "loc", self.loc, np.isfinite(self.loc.data), "finite")
        check_positive("VonMises", "concentration", self.concentration)
        super().__init__(shape, (), dtype, validate_args)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        k = broadcast(self.concentration, self.batch_shape)
        theta = sample_standard_angle(np.broadcast_to(k.data, shape).astype(np.float64), self._rng(rng))
        x = self.loc + von_mises_angle(k, angle=theta.astype(self.dtype))
        # Wrapped into [-pi, pi) by adding a multiple of 2 pi (a constant: the gradient is x's).
        wrapped = np.mod(x.data + np.pi, 2 * np.pi) - np.pi
        return x + (wrapped - x.data).astype(self.dtype)

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, ops.isfinite(x))
        x = x if inside.data.all() else ops.where(inside, x, 0.0)
        k = self.concentration
        lp = k * (ops.cos(x - self.loc) - 1) - LOG_2PI - ops.log(ops.i0e(k))
        return outside_is_impossible(inside, lp)

    def entropy(self):
        k = self.concentration
        return broadcast(LOG_2PI + ops.log(ops.i0e(k)) + k * (1 - bessel_ratio(k)), self.batch_shape)

    @property
    def mean(self):
        return broadcast(self.loc, self.batch_shape)

    @property
    def mode(self):
        return broadcast(self.loc, self.batch_shape)

    @property
    def variance(self):
        k = self.concentration
        return broadcast(1 - bessel_ratio(k), self.batch_shape)

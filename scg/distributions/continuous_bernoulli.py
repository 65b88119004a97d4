"""ContinuousBernoulli(probs=None, logits=None) (Loaiza-Ganem & Cunningham 2019) on [0, 1].

Density C(l) p^x (1 - p)^(1 - x) = C(l) exp(x l - softplus(l)), l = logit(p), with the
normaliser C = 2 atanh(1 - 2p) / (1 - 2p), which in the logit is

    C(l) = l / tanh(l / 2) = 2 y coth(y),  y = l / 2   (C(0) = 2).

With y = l / 2 the moments and the cdf are, in the same variable,

    mean = 1/2 + (coth y - 1/y) / 2,     variance = (1/y^2 - 1/sinh^2 y) / 4,
    F(x) = expm1(l x) / expm1(l),        F^-1(u) = log1p(u expm1(l)) / l.

Each has a removable singularity at p = 1/2 (l = 0), where the direct forms divide 0 by
0 or cancel. Inside a window around it, as the paper does, they are replaced by Taylor
series in y (coefficients from y coth y = 1 + y^2/3 - y^4/45 + 2y^6/945 - y^8/4725 + ...):
|l| < 0.02 for the normaliser, mean and variance (the direct forms lose at most ~1e-11 at
the edge, the series' first omitted term is ~1e-19), and |l| < 1e-6 for the cdf and its
inverse, whose direct forms are accurate for any l != 0. The functions of l are evaluated
in float64 (so float32's rounding does not widen the windows) and returned in the dtype of
the distribution. ``rsample`` is F^-1(u), u ~ Uniform(0, 1).

Like torch, ``probs`` are clipped into [eps, 1 - eps] (eps of the dtype) before use, so that
probs 0 and 1 give a finite normaliser; logits are used as they are.
"""

import numpy as np

from .. import ops
from . import constraints
from .bernoulli import coin_params
from .beta import Beta
from .distribution import Distribution, broadcast, follows_value_dtype, keep_inside_unit_interval, outside_is_impossible
from .exponential import Exponential
from .gamma import Gamma
from .gumbel import Gumbel
from .kl import infinite, infinite_where, register_kl
from .laplace import Laplace
from .normal import Normal, kl_to_normal
from .uniform import Uniform

WINDOW = 0.02  # |l| below it: Taylor series for log C, mean and variance
CDF_WINDOW = 1e-6  # |l| below it: Taylor series for the cdf and its inverse


def _in_float64(fn):
    """fn(l) evaluated with l in float64, returned in l's dtype."""

    def wrapped(l, *args):
        out = fn(ops.astype(l, np.float64), *(ops.astype(a, np.float64) if hasattr(a, "dtype") else a for a in args))
        return ops.astype(out, l.dtype)

    return wrapped


def _split(l, window):
    """(near, l with the near values replaced by 1, l with the far values replaced by 0):
    each branch sees only values it handles, so neither gives inf or NaN in value or gradient."""
    near = ops.less(ops.abs(l), window)
    return near, ops.where(near, 1.0, l), ops.where(near, l, 0.0)


@_in_float64
def log_normalizer(l):
    """log C(l) = log(l / tanh(l / 2)), even in l; log 2 at l = 0."""
    near, far, small = _split(l, WINDOW)
    a = ops.abs(far)
    direct = ops.log(a) + ops.softplus(-a) - ops.log(-ops.expm1(-a))
    u = small * small / 4  # y^2
    series = np.log(2.0) + ops.log1p(u * (1 / 3 + u * (-1 / 45 + u * (2 / 945 - u / 4725))))
    return ops.where(near, series, direct)


@_in_float64
def _mean(l):
    near, far, small = _split(l, WINDOW)
    y = far / 2
    direct = 0.5 + (1 / ops.tanh(y) - 1 / y) / 2
    y, u = small / 2, small * small / 4
    series = 0.5 + y * (1 / 3 + u * (-1 / 45 + u * (2 / 945 - u / 4725))) / 2
    return ops.where(near, series, direct)


@_in_float64
def _variance(l):
    near, far, small = _split(l, WINDOW)
    y = far / 2
    e = ops.exp(-ops.abs(far))  # e^(-2|y|): 1 / sinh^2 y = 4 e^(-2|y|) / (1 - e^(-2|y|))^2, no overflow
    em1 = ops.expm1(-ops.abs(far))
    direct = (1 / (y * y) - 4 * e / (em1 * em1)) / 4
    u = small * small / 4
    series = (1 / 3 + u * (-1 / 15 + u * (2 / 189 - u / 675))) / 4
    return ops.where(near, series, direct)


@_in_float64
def _cdf(l, x):
    near, far, small = _split(l, CDF_WINDOW)
    # For l > 0, F(x; l) = 1 - F(1 - x; -l) keeps expm1 away from overflow.
    pos = ops.greater(far, 0)
    m = -ops.abs(far)
    lower = ops.expm1(m * ops.where(pos, 1 - x, x)) / ops.expm1(m)
    direct = ops.where(pos, 1 - lower, lower)
    series = x + small * x * (x - 1) / 2 + small * small * x * (x - 1) * (2 * x - 1) / 12
    return ops.where(near, series, direct)


@_in_float64
def _icdf(l, u):
    near, far, small = _split(l, CDF_WINDOW)
    pos = ops.greater(far, 0)
    m = -ops.abs(far)
    lower = ops.log1p(ops.where(pos, 1 - u, u) * ops.expm1(m)) / m
    direct = ops.where(pos, 1 - lower, lower)
    series = u - small * u * (u - 1) / 2 + small * small * u * (u - 1) * (2 * u - 1) / 6
    return ops.where(near, series, direct)


class ContinuousBernoulli(Distribution):
    """Continuous Bernoulli with ``probs`` in [0, 1] or ``logits`` (exactly one); x in [0, 1]."""

    has_rsample = True
    support = constraints.unit_interval
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}

    def __init__(self, probs=None, logits=None, validate_args=None):
        self._given, param, shape, dtype, self._untyped = coin_params("ContinuousBernoulli", probs, logits)
        super().__init__(shape, (), dtype, validate_args)
        self._param = param

    @property
    def probs(self):
        return self._param if self._given == "probs" else ops.sigmoid(self._param)

    @property
    def logits(self):
        if self._given == "logits":
            return self._param
        eps = float(np.finfo(self.dtype).eps)
        p = ops.clip(self._param, eps, 1 - eps)
        return ops.log(p) - ops.log1p(-p)

    def rsample(self, sample_shape=(), rng=None):
        shape = self._extended_shape(sample_shape)
        u = self._rng(rng).random(shape).astype(self.dtype)
        return keep_inside_unit_interval(_icdf(broadcast(self.logits, self.batch_shape), u))

    @follows_value_dtype
    def log_prob(self, value):
        x = self._value(value)
        inside = self._support(x, (x >= 0) & (x <= 1))
        l = self.logits
        lp = x * l - ops.softplus(l) + log_normalizer(l)
        return outside_is_impossible(inside, lp)

    @follows_value_dtype
    def cdf(self, value):
        """F(x) = expm1(l x) / expm1(l) (x at l = 0), clipped to [0, 1] outside the support."""
        x, _ = self._cdf_value(value)  # refused outside the support under validation
        x = ops.clip(x, 0, 1)
        return _cdf(self.logits, x)

    @follows_value_dtype
    def icdf(self, value):
        """F^-1(u) = log1p(u expm1(l)) / l (u at l = 0) for u in [0, 1]."""
        u = self._value(value)
        if self._validate and not ((u.data >= 0) & (u.data <= 1)).all():
            raise ValueError("ContinuousBernoulli.icdf: value must be a probability in [0, 1]")
        return _icdf(self.logits, u)

    def entropy(self):
        l = self.logits
        return broadcast(-(_mean(l) * l - ops.softplus(l) + log_normalizer(l)), self.batch_shape)

    @property
    def mean(self):
        return broadcast(_mean(self.logits), self.batch_shape)

    @property
    def variance(self):
        return broadcast(_variance(self.logits), self.batch_shape)


@register_kl(ContinuousBernoulli, ContinuousBernoulli)
def _kl_continuous_bernoulli(p, q):
    # E_p[x] (l_p - l_q) - softplus(l_p) + softplus(l_q) + log C(l_p) - log C(l_q)
    lp, lq = p.logits, q.logits
    return (_mean(lp) * (lp - lq) - ops.softplus(lp) + ops.softplus(lq)
            + log_normalizer(lp) - log_normalizer(lq))


# Pairs with the families imported before this one (the rule in kl.py). With l = logit(q),
# log q(x) = x l - softplus(l) + log C(l) is linear in x, so E_p[log q] needs only E_p[x]:
# for p on [0, 1], KL(p || q) = -H(p) - E_p[x] l + softplus(l) - log C(l).


def _expected_log_density(q, mean):
    """E_p[log q(x)] for a p on [0, 1] with E_p[x] = ``mean``."""
    l = q.logits
    return mean * l - ops.softplus(l) + log_normalizer(l)


@register_kl(Beta, ContinuousBernoulli)
def _kl_beta_continuous_bernoulli(p, q):
    return -p.entropy() - _expected_log_density(q, p.mean)


@register_kl(Uniform, ContinuousBernoulli)
def _kl_uniform_continuous_bernoulli(p, q):
    # -log(h - l) - E_p[log q], finite when [low, high) lies inside [0, 1]
    outside = (p.low < 0) | (p.high > 1)
    kl = -ops.log(p.high - p.low) - _expected_log_density(q, (p.low + p.high) / 2)
    return infinite_where(outside, kl)


@register_kl(ContinuousBernoulli, Uniform)
def _kl_continuous_bernoulli_uniform(p, q):
    # -H(p) + log(h - l), finite when [0, 1] lies inside [low, high] (x = 1 has no mass)
    return infinite_where((q.low > 0) | (q.high < 1), -p.entropy() + ops.log(q.high - q.low))


@register_kl(ContinuousBernoulli, Exponential)
def _kl_continuous_bernoulli_exponential(p, q):
    # -H(p) - E_p[log r - r x]
    return -p.entropy() - ops.log(q.rate) + q.rate * p.mean


register_kl(ContinuousBernoulli, Normal)(kl_to_normal)


@register_kl(Normal, ContinuousBernoulli)
@register_kl(Laplace, ContinuousBernoulli)
@register_kl(Gumbel, ContinuousBernoulli)
@register_kl(Exponential, ContinuousBernoulli)
@register_kl(Gamma, ContinuousBernoulli)
def _kl_unbounded_continuous_bernoulli(p, q):
    return infinite(p, q)  # p puts mass outside [0, 1]

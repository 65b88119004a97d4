"""The scalar continuous families in one table, and the helpers their tests share.

Imported by the test modules of this folder (pytest puts the folder on ``sys.path``).
``test_families.py`` runs every check that applies to all of them over ``FAMILIES``;
the modules named after a family test what is particular to it. A new scalar family
gets its row here and is then checked like the others.

Expected values come from ``scipy.stats`` / ``scipy.special`` or closed forms written
out in the tests, never from the code under test. Statistical checks use fixed seeds
and allow ``Z = 4`` standard errors, computed from analytic moments or from the
per-sample values themselves.

float32 tolerances: a float32 evaluation of a sum of a handful of terms, each computed
with at most a few rounding errors, is accurate to a few float32 ulps of the sum of the
terms' magnitudes; the tests allow ``8 eps32 (1 + sum |term|)`` (``f32_tol``) and
evaluate scipy at the float32-rounded parameters and values (so rounding of the inputs
themselves is not counted as error).
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.special as sp
import scipy.stats as st

import scg
import scg.distributions as D

EPS32 = float(np.finfo(np.float32).eps)
Z = 4.0  # standard errors allowed in statistical checks


def rng(seed=0):
    return np.random.default_rng(seed)


def f32_tol(*terms):
    """Absolute tolerance for a float32 result that sums ``terms`` (see module docstring)."""
    return 8 * EPS32 * (1 + sum(np.abs(np.asarray(t, dtype=np.float64)) for t in terms))


def make(name, **params):
    return getattr(D, name)(**params)


@dataclass(frozen=True)
class Family:
    """One scalar continuous family: its test parameters, references and error scales.

    grid: parameters as equal-length 1-D lists, one batch of P settings (values checks).
    scipy: params (float64 arrays) -> the scipy.stats frozen distribution.
    values: params -> points inside the support, shape (Q, P).
    log_prob_terms, entropy_terms: the magnitudes a float32 evaluation sums (for f32_tol).
    support: (params, x) -> bool array, x inside the support (where samples must land).
    batch: parameters broadcasting to batch shape (3, 4) (shape and broadcasting checks).
    sample: parameters of two settings (sample distribution checks).
    example: one setting as Python floats (dtype and gradient checks).
    invalid: (build, fragments): invalid parameters and what the ValueError must name.
    outside: (params, values outside the support, a value inside), or None for the real line.
    gradcheck: (params, values) for second-order gradient checks of log_prob and rsample.
    grid_moments: the grid's samples have light enough tails for moment checks on it.
    f32_moment_rtol: relative float32 error of mean and variance (a few roundings).
    """

    grid: dict
    scipy: Callable
    values: Callable
    log_prob_terms: Callable
    entropy_terms: Callable
    support: Callable
    batch: dict
    sample: dict
    example: dict
    invalid: list
    outside: tuple = None
    gradcheck: tuple = None
    grid_moments: bool = False
    f32_moment_rtol: float = 1e-6


def _loc_scale_values(p):
    return p["loc"] + p["scale"] * np.array([-6.0, -1.5, -0.2, 0.0, 0.7, 3.0, 25.0])[:, None]


def _spread(p, x):
    """Rounding of x - loc carried through z = (x - loc) / scale."""
    return (np.abs(x) + np.abs(p["loc"])) / p["scale"]


def _z(p, x):
    return (x - p["loc"]) / p["scale"]


def _student_t_log_prob_terms(p, x):
    nu, z = p["df"], _z(p, x)
    return [sp.gammaln((nu + 1) / 2), sp.gammaln(nu / 2), np.log(nu), np.log(p["scale"]),
            (nu + 1) / 2 * np.log1p(z * z / nu), (nu + 1) * _spread(p, x)]


def _student_t_entropy_terms(p):
    nu = p["df"]
    return [np.log(p["scale"]), 2.0, sp.gammaln(nu / 2), sp.gammaln((nu + 1) / 2), np.log(nu),
            (nu + 1) / 2 * sp.digamma((nu + 1) / 2), (nu + 1) / 2 * sp.digamma(nu / 2)]


def _log_normal_log_prob_terms(p, x):
    ly = np.log(x)
    z = (ly - p["loc"]) / p["scale"]
    return [ly, z * z, np.abs(z) * (np.abs(ly) + np.abs(p["loc"])) / p["scale"], np.log(p["scale"])]


def _beta_log_prob_terms(p, x):
    a, b = p["concentration1"], p["concentration0"]
    return [(a - 1) * np.log(x), (b - 1) * np.log1p(-x), b - 1, sp.gammaln(a), sp.gammaln(b),
            sp.gammaln(a + b)]


def _beta_entropy_terms(p):
    a, b = p["concentration1"], p["concentration0"]
    return [sp.gammaln(a), sp.gammaln(b), sp.gammaln(a + b), (a - 1) * sp.digamma(a),
            (b - 1) * sp.digamma(b), (a + b - 2) * sp.digamma(a + b)]


def _uniform_terms(p, x=None):
    w = p["high"] - p["low"]
    return [np.log(w), (abs(p["high"]) + abs(p["low"])) / w]  # the subtraction's rounding


def _positive(p, x):
    return x > 0


def _non_negative(p, x):
    return x >= 0


def _real_line(p, x):
    return np.isfinite(x)


class _Kumaraswamy(st.rv_continuous):
    """Kumaraswamy(a, b) for scipy's machinery, from its closed forms: density a b x^(a-1)
    (1 - x^a)^(b-1), cdf 1 - (1 - x^a)^b, raw moments b B(1 + n/a, b), entropy
    (1 - 1/b) + (1 - 1/a) H_b - log(a b) with H_b = psi(b + 1) + Euler's gamma."""

    def _pdf(self, x, a, b):
        return np.exp(self._logpdf(x, a, b))

    def _logpdf(self, x, a, b):
        return np.log(a * b) + sp.xlogy(a - 1, x) + sp.xlogy(b - 1, -np.expm1(a * np.log(x)))

    def _cdf(self, x, a, b):
        return -np.expm1(b * np.log1p(-(x**a)))

    def _ppf(self, q, a, b):
        return (-np.expm1(np.log1p(-q) / b)) ** (1 / a)

    def _munp(self, n, a, b):
        return b * sp.beta(1 + n / a, b)

    def _entropy(self, a, b):
        return (1 - 1 / b) + (1 - 1 / a) * (sp.digamma(b + 1) + np.euler_gamma) - np.log(a * b)


kumaraswamy = _Kumaraswamy(a=0.0, b=1.0, name="kumaraswamy")

FAMILIES = {
    "Normal": Family(
        grid=dict(loc=[0.0, -3.0, 10.0, 1e3, 0.5], scale=[1.0, 0.1, 4.0, 2.0, 1e-3]),
        scipy=lambda p: st.norm(p["loc"], p["scale"]),
        values=lambda p: p["loc"] + p["scale"] * np.array([-5.0, -1.0, 0.0, 0.3, 2.0, 8.0])[:, None],
        # x - loc is rounded to eps (|x| + |loc|), which moves z^2 / 2 by |z| times that / scale.
        log_prob_terms=lambda p, x: [_z(p, x) ** 2 / 2, np.log(p["scale"]), 1.0, _z(p, x) * _spread(p, x)],
        entropy_terms=lambda p: [np.log(p["scale"]), 1.5],
        support=_real_line,
        batch=dict(loc=np.array([[0.5], [1.0], [2.0]]), scale=np.array([0.5, 1.0, 3.0, 9.0])),
        sample=dict(loc=[0.3, -4.0], scale=[2.0, 0.1]),
        example=dict(loc=10.0, scale=4.0),
        invalid=[
            (lambda: D.Normal(0.0, 0.0), ["'scale'"]),
            (lambda: D.Normal(0.0, np.array([1.0, -2.0])), ["'scale'", "-2"]),
            (lambda: D.Normal(np.nan, 1.0), ["'loc'"]),
            (lambda: D.Normal(np.inf, 1.0), ["'loc'"]),
            (lambda: D.Normal(np.zeros(3), np.ones(4)), ["loc", "scale", "(3,)", "(4,)"]),
        ],
        grid_moments=True,
    ),
    "Gamma": Family(
        grid=dict(concentration=[0.1, 0.5, 1.0, 1.0, 3.0, 20.0, 300.0], rate=[1.0, 2.0, 0.5, 1.0, 10.0, 0.3, 50.0]),
        scipy=lambda p: st.gamma(p["concentration"], scale=1 / p["rate"]),
        values=lambda p: np.array([1e-4, 0.1, 0.5, 1.0, 2.0, 5.0])[:, None] * p["concentration"] / p["rate"],
        log_prob_terms=lambda p, x: [p["concentration"] * np.log(p["rate"]), (p["concentration"] - 1) * np.log(x),
                                     p["rate"] * x, sp.gammaln(p["concentration"])],
        entropy_terms=lambda p: [p["concentration"], np.log(p["rate"]), sp.gammaln(p["concentration"]),
                                 (1 - p["concentration"]) * sp.digamma(p["concentration"])],
        support=_positive,
        batch=dict(concentration=np.array([[0.5], [1.0], [2.0]]), rate=np.array([0.5, 1.0, 3.0, 9.0])),
        sample=dict(concentration=[0.5, 7.0], rate=[2.0, 0.5]),
        example=dict(concentration=1.0, rate=0.5),
        invalid=[
            (lambda: D.Gamma(0.0, 1.0), ["'concentration'"]),
            (lambda: D.Gamma(-1.0, 1.0), ["'concentration'"]),
            (lambda: D.Gamma(1.0, -1.0), ["'rate'"]),
            (lambda: D.Gamma(1.0, np.inf), ["'rate'"]),
            (lambda: D.Gamma(np.ones((2, 3)), np.ones(2)), ["concentration", "rate", "(2, 3)", "(2,)"]),
        ],
        outside=(dict(concentration=np.array([0.5, 2.0]), rate=3.0), [-1e-300, -1.0, -np.inf], 0.5),
        grid_moments=True,
    ),
    "Exponential": Family(
        grid=dict(rate=[0.05, 0.5, 1.0, 3.0, 40.0]),
        scipy=lambda p: st.expon(scale=1 / p["rate"]),
        values=lambda p: np.array([0.0, 1e-3, 0.5, 1.0, 4.0, 30.0])[:, None] / p["rate"],
        log_prob_terms=lambda p, x: [np.log(p["rate"]), p["rate"] * x],
        entropy_terms=lambda p: [np.log(p["rate"])],
        support=_non_negative,
        batch=dict(rate=np.array([[0.5], [1.0], [2.0]]) * np.ones(4)),
        sample=dict(rate=[0.5, 4.0]),
        example=dict(rate=0.5),
        invalid=[
            (lambda: D.Exponential(0.0), ["'rate'"]),
            (lambda: D.Exponential(np.array([1.0, -2.0])), ["'rate'", "-2"]),
            (lambda: D.Exponential(np.inf), ["'rate'"]),
            (lambda: D.Exponential(np.nan), ["'rate'"]),
        ],
        outside=(dict(rate=np.array([0.5, 2.0])), [-1e-300, -1.0, -np.inf], 1.0),
        grid_moments=True,
    ),
    "Uniform": Family(
        grid=dict(low=[-3.0, 0.0, 0.25, 1e3, -1e-3], high=[-1.0, 1.0, 0.5, 1e3 + 7, 2.0]),
        scipy=lambda p: st.uniform(loc=p["low"], scale=p["high"] - p["low"]),
        values=lambda p: p["low"] + (p["high"] - p["low"]) * np.array([0.0, 0.1, 0.5, 0.9, 0.999])[:, None],
        log_prob_terms=_uniform_terms,
        entropy_terms=_uniform_terms,
        support=lambda p, x: (x >= p["low"]) & (x < p["high"]),  # torch: low <= x < high
        batch=dict(low=np.array([[-1.0], [0.0], [5.0]]), high=np.array([6.0, 7.0, 8.0, 9.0])),
        sample=dict(low=[0.3, -4.0], high=[2.0, -3.9]),
        example=dict(low=0.0, high=1.0),
        invalid=[
            (lambda: D.Uniform(1.0, 1.0), ["'low'", "'high'"]),
            (lambda: D.Uniform(np.array([0.0, 2.0]), np.array([1.0, 1.5])), ["'low'", "'high'", "2.0", "1.5"]),
            (lambda: D.Uniform(-np.inf, 0.0), ["'low'"]),
            (lambda: D.Uniform(0.0, np.inf), ["'high'"]),
            (lambda: D.Uniform(np.zeros(3), np.ones(4)), ["low", "high", "(3,)", "(4,)"]),
        ],
        outside=(dict(low=np.array([0.0, -2.0]), high=1.0), [-2.5, 1.0, 7.0], 0.5),
        grid_moments=True,
    ),
    "Beta": Family(
        grid=dict(concentration1=[0.1, 0.5, 1.0, 1.0, 2.0, 5.0, 30.0, 0.7],
                  concentration0=[0.3, 0.5, 1.0, 3.0, 2.0, 0.8, 60.0, 40.0]),
        scipy=lambda p: st.beta(p["concentration1"], p["concentration0"]),
        values=lambda p: np.broadcast_to(np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6])[:, None],
                                         (7, len(p["concentration1"]))),
        log_prob_terms=_beta_log_prob_terms,
        entropy_terms=_beta_entropy_terms,
        support=lambda p, x: (x > 0) & (x < 1),
        batch=dict(concentration1=np.array([[0.5], [1.0], [3.0]]), concentration0=np.array([0.5, 1.0, 2.0, 9.0])),
        sample=dict(concentration1=[0.5, 3.0], concentration0=[2.0, 0.7]),
        example=dict(concentration1=0.5, concentration0=0.5),
        invalid=[
            (lambda: D.Beta(0.0, 1.0), ["'concentration1'"]),
            (lambda: D.Beta(1.0, -1.0), ["'concentration0'"]),
            (lambda: D.Beta(np.ones(3), np.ones(4)), ["concentration1", "concentration0", "(3,)", "(4,)"]),
            (lambda: D.Beta("a", 1.0), ["'concentration1'"]),
        ],
        outside=(dict(concentration1=np.array([0.5, 2.0]), concentration0=3.0), [-1e-9, 1 + 1e-9, 5.0], 0.3),
        grid_moments=True,
    ),
    "LogNormal": Family(
        grid=dict(loc=[0.0, -1.0, 2.0, 0.3, 5.0], scale=[1.0, 0.1, 2.0, 0.5, 0.05]),
        scipy=lambda p: st.lognorm(s=p["scale"], scale=np.exp(p["loc"])),
        values=lambda p: np.exp(_loc_scale_values(p)),
        log_prob_terms=_log_normal_log_prob_terms,
        entropy_terms=lambda p: [np.log(p["scale"]), 2.0, p["loc"]],
        support=_positive,
        batch=dict(loc=np.array([[0.3], [-1.0], [0.5]]), scale=np.array([0.4, 0.2, 0.3, 0.5])),
        sample=dict(loc=[0.3, -1.0], scale=[0.4, 0.2]),
        example=dict(loc=0.3, scale=0.4),
        invalid=[
            (lambda: D.LogNormal(0.0, 0.0), ["'scale'"]),
            (lambda: D.LogNormal(np.inf, 1.0), ["'loc'"]),
            (lambda: D.LogNormal(np.zeros(2), np.ones(3)), ["loc", "scale", "(2,)", "(3,)"]),
        ],
        outside=(dict(loc=np.array([0.5, -1.0]), scale=1.5), [-1.0, 0.0, -np.inf], 1.0),
        gradcheck=(dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [0.5, 2.5]),
        f32_moment_rtol=4e-6,
    ),
    "Laplace": Family(
        grid=dict(loc=[0.0, -3.0, 10.0, 1e3, 0.5], scale=[1.0, 0.1, 4.0, 2.0, 1e-3]),
        scipy=lambda p: st.laplace(p["loc"], p["scale"]),
        values=_loc_scale_values,
        log_prob_terms=lambda p, x: [_z(p, x), _spread(p, x), np.log(p["scale"])],
        entropy_terms=lambda p: [np.log(p["scale"]), 2.0],
        support=_real_line,
        batch=dict(loc=np.array([[0.3], [-4.0], [1.0]]), scale=np.array([2.0, 0.1, 1.0, 0.5])),
        sample=dict(loc=[0.3, -4.0], scale=[2.0, 0.1]),
        example=dict(loc=0.3, scale=2.0),
        invalid=[
            (lambda: D.Laplace(0.0, -1.0), ["'scale'", "-1"]),
            (lambda: D.Laplace(np.nan, 1.0), ["'loc'"]),
            (lambda: D.Laplace(0.0, np.inf), ["'scale'"]),
        ],
        gradcheck=(dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
        f32_moment_rtol=4e-6,
    ),
    "StudentT": Family(
        grid=dict(df=[0.5, 1.0, 2.5, 5.0, 30.0, 300.0], loc=[0.0, -2.0, 1.0, 0.5, 10.0, -1.0],
                  scale=[1.0, 0.5, 3.0, 0.1, 2.0, 1.0]),
        scipy=lambda p: st.t(p["df"], p["loc"], p["scale"]),
        values=_loc_scale_values,
        log_prob_terms=_student_t_log_prob_terms,
        entropy_terms=_student_t_entropy_terms,
        support=_real_line,
        batch=dict(df=np.array([[1.5], [7.0], [3.0]]), loc=np.array([0.3, -4.0, 1.0, 0.0]), scale=2.0),
        sample=dict(df=[1.5, 7.0], loc=[0.3, -4.0], scale=[2.0, 0.5]),
        example=dict(df=1.5, loc=0.3, scale=2.0),
        invalid=[
            (lambda: D.StudentT(0.0), ["'df'"]),
            (lambda: D.StudentT(np.array([1.0, -2.0])), ["'df'", "-2"]),
            (lambda: D.StudentT(np.inf), ["'df'"]),
            (lambda: D.StudentT(3.0, 0.0, 0.0), ["'scale'"]),
            (lambda: D.StudentT(3.0, -np.inf, 1.0), ["'loc'"]),
            (lambda: D.StudentT("x"), ["'df'"]),
        ],
        gradcheck=(dict(df=[1.5, 7.0], loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
        f32_moment_rtol=4e-6,
    ),
    "Cauchy": Family(
        grid=dict(loc=[0.0, -3.0, 10.0, 0.5], scale=[1.0, 0.1, 4.0, 1e-3]),
        scipy=lambda p: st.cauchy(p["loc"], p["scale"]),
        values=_loc_scale_values,
        log_prob_terms=lambda p, x: [np.log1p(_z(p, x) ** 2), _spread(p, x), np.log(p["scale"])],
        entropy_terms=lambda p: [np.log(p["scale"]), 2.0],
        support=_real_line,
        batch=dict(loc=np.array([[0.3], [-4.0], [1.0]]), scale=np.array([2.0, 0.1, 1.0, 0.5])),
        sample=dict(loc=[0.3, -4.0], scale=[2.0, 0.1]),
        example=dict(loc=0.3, scale=2.0),
        invalid=[
            (lambda: D.Cauchy(0.0, -2.0), ["'scale'"]),
            (lambda: D.Cauchy(np.inf, 1.0), ["'loc'"]),
        ],
        gradcheck=(dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
        f32_moment_rtol=4e-6,
    ),
    "HalfNormal": Family(
        grid=dict(scale=[1.0, 0.1, 4.0, 1e3]),
        scipy=lambda p: st.halfnorm(scale=p["scale"]),
        values=lambda p: p["scale"] * np.abs(_loc_scale_values(dict(loc=0.0, scale=1.0))) + p["scale"] * 1e-3,
        log_prob_terms=lambda p, x: [(x / p["scale"]) ** 2, np.log(p["scale"])],
        entropy_terms=lambda p: [np.log(p["scale"]), 2.0],
        support=_non_negative,
        batch=dict(scale=np.array([[0.5], [3.0], [1.0]]) * np.ones(4)),
        sample=dict(scale=[0.5, 3.0]),
        example=dict(scale=0.5),
        invalid=[
            (lambda: D.HalfNormal(0.0), ["'scale'"]),
            (lambda: D.HalfNormal(np.array([1.0, -0.5])), ["'scale'", "-0.5"]),
            (lambda: D.HalfNormal(np.nan), ["'scale'"]),
        ],
        outside=(dict(scale=np.array([2.0, 0.5])), [-1e-300, -3.0, -np.inf], 1.0),
        gradcheck=(dict(scale=[0.7, 1.4]), [0.5, 2.5]),
        f32_moment_rtol=4e-6,
    ),
    "Gumbel": Family(
        grid=dict(loc=[0.0, -3.0, 10.0, 1e3, 0.5], scale=[1.0, 0.1, 4.0, 2.0, 1e-3]),
        scipy=lambda p: st.gumbel_r(p["loc"], p["scale"]),
        values=_loc_scale_values,
        # z + e^(-z): the rounding of z is carried by the derivative 1 - e^(-z)
        log_prob_terms=lambda p, x: [_z(p, x), np.exp(-_z(p, x)), _spread(p, x) * (1 + np.exp(-_z(p, x))),
                                     np.log(p["scale"])],
        entropy_terms=lambda p: [np.log(p["scale"]), 2.0],
        support=_real_line,
        batch=dict(loc=np.array([[0.3], [-4.0], [1.0]]), scale=np.array([2.0, 0.1, 1.0, 0.5])),
        sample=dict(loc=[0.3, -4.0], scale=[2.0, 0.1]),
        example=dict(loc=0.3, scale=2.0),
        invalid=[
            (lambda: D.Gumbel(0.0, 0.0), ["'scale'"]),
            (lambda: D.Gumbel(np.nan, 1.0), ["'loc'"]),
            (lambda: D.Gumbel(np.zeros(2), np.ones(3)), ["loc", "scale", "(2,)", "(3,)"]),
        ],
        gradcheck=(dict(loc=[0.3, -1.0], scale=[0.7, 1.4]), [1.5, -2.0]),
        grid_moments=True,
        f32_moment_rtol=4e-6,
    ),
    "HalfCauchy": Family(
        grid=dict(scale=[1.0, 0.1, 4.0, 1e3]),
        scipy=lambda p: st.halfcauchy(scale=p["scale"]),
        values=lambda p: p["scale"] * np.abs(_loc_scale_values(dict(loc=0.0, scale=1.0))) + p["scale"] * 1e-3,
        log_prob_terms=lambda p, x: [np.log1p((x / p["scale"]) ** 2), np.log(p["scale"]), 2.0],
        entropy_terms=lambda p: [np.log(p["scale"]), 2.0],
        support=_non_negative,
        batch=dict(scale=np.array([[0.5], [3.0], [1.0]]) * np.ones(4)),
        sample=dict(scale=[0.5, 3.0]),
        example=dict(scale=0.5),
        invalid=[
            (lambda: D.HalfCauchy(0.0), ["'scale'"]),
            (lambda: D.HalfCauchy(np.array([1.0, -0.5])), ["'scale'", "-0.5"]),
            (lambda: D.HalfCauchy(np.inf), ["'scale'"]),
        ],
        outside=(dict(scale=np.array([2.0, 0.5])), [-1e-300, -3.0, -np.inf], 1.0),
        gradcheck=(dict(scale=[0.7, 1.4]), [0.5, 2.5]),
    ),
    "Weibull": Family(
        grid=dict(scale=[1.0, 0.5, 2.0, 10.0, 0.3, 1e3], concentration=[0.5, 1.0, 1.5, 3.0, 10.0, 0.8]),
        scipy=lambda p: st.weibull_min(p["concentration"], scale=p["scale"]),
        values=lambda p: p["scale"] * np.array([1e-3, 0.1, 0.5, 1.0, 2.0, 3.0])[:, None],
        # (k - 1) log t - t^k; the rounding of log t is carried by k t^k
        log_prob_terms=lambda p, x: [np.log(p["concentration"]), np.log(p["scale"]),
                                     (p["concentration"] - 1) * np.log(x / p["scale"]),
                                     (1 + p["concentration"]) * (x / p["scale"]) ** p["concentration"]],
        entropy_terms=lambda p: [np.euler_gamma / p["concentration"], np.log(p["scale"]), np.log(p["concentration"]), 2.0],
        support=_positive,
        batch=dict(scale=np.array([[0.5], [3.0], [1.0]]), concentration=np.array([0.7, 1.0, 2.0, 5.0])),
        sample=dict(scale=[0.5, 3.0], concentration=[0.7, 4.0]),
        example=dict(scale=0.5, concentration=2.0),
        invalid=[
            (lambda: D.Weibull(0.0, 1.0), ["'scale'"]),
            (lambda: D.Weibull(1.0, -1.0), ["'concentration'", "-1"]),
            (lambda: D.Weibull(1.0, np.inf), ["'concentration'"]),
            (lambda: D.Weibull(np.ones(2), np.ones(3)), ["scale", "concentration", "(2,)", "(3,)"]),
        ],
        outside=(dict(scale=np.array([2.0, 0.5]), concentration=1.5), [0.0, -1.0, -np.inf], 1.0),
        gradcheck=(dict(scale=[0.7, 1.4], concentration=[0.8, 2.5]), [0.5, 2.5]),
        grid_moments=True,
        f32_moment_rtol=1e-5,
    ),
    "Chi2": Family(
        grid=dict(df=[0.3, 1.0, 2.0, 5.0, 30.0, 300.0]),
        scipy=lambda p: st.chi2(p["df"]),
        values=lambda p: np.array([1e-4, 0.1, 0.5, 1.0, 2.0, 5.0])[:, None] * p["df"],
        log_prob_terms=lambda p, x: [p["df"] / 2 * np.log(2), (p["df"] / 2 - 1) * np.log(x), x / 2,
                                     sp.gammaln(p["df"] / 2)],
        entropy_terms=lambda p: [p["df"] / 2, sp.gammaln(p["df"] / 2), (1 - p["df"] / 2) * sp.digamma(p["df"] / 2)],
        support=_positive,
        batch=dict(df=np.array([[0.5], [1.0], [2.0]]) * np.array([1.0, 2.0, 3.0, 9.0])),
        sample=dict(df=[0.7, 7.0]),
        example=dict(df=3.0),
        invalid=[
            (lambda: D.Chi2(0.0), ["'df'"]),
            (lambda: D.Chi2(np.array([1.0, -2.0])), ["'df'", "-2"]),
            (lambda: D.Chi2(np.inf), ["'df'"]),
            (lambda: D.Chi2(np.nan), ["'df'"]),
        ],
        outside=(dict(df=np.array([0.5, 4.0])), [-1e-300, -1.0, -np.inf], 0.5),
        grid_moments=True,
    ),
    "InverseGamma": Family(
        grid=dict(concentration=[0.5, 1.0, 2.5, 3.0, 10.0, 300.0], rate=[1.0, 2.0, 0.5, 4.0, 0.3, 50.0]),
        scipy=lambda p: st.invgamma(p["concentration"], scale=p["rate"]),
        values=lambda p: np.array([0.05, 0.2, 0.5, 1.0, 2.0, 10.0])[:, None] * p["rate"] / p["concentration"],
        log_prob_terms=lambda p, x: [p["concentration"] * np.log(p["rate"]), sp.gammaln(p["concentration"]),
                                     (p["concentration"] + 1) * np.log(x), p["rate"] / x],
        entropy_terms=lambda p: [p["concentration"], np.log(p["rate"]), sp.gammaln(p["concentration"]),
                                 (1 + p["concentration"]) * sp.digamma(p["concentration"])],
        support=_positive,
        batch=dict(concentration=np.array([[0.5], [1.0], [3.0]]), rate=np.array([0.5, 1.0, 3.0, 9.0])),
        sample=dict(concentration=[2.5, 7.0], rate=[2.0, 0.5]),
        example=dict(concentration=3.0, rate=2.0),
        invalid=[
            (lambda: D.InverseGamma(0.0, 1.0), ["'concentration'"]),
            (lambda: D.InverseGamma(np.array([1.0, -2.0]), 1.0), ["'concentration'", "-2"]),
            (lambda: D.InverseGamma(1.0, -1.0), ["'rate'"]),
            (lambda: D.InverseGamma(1.0, np.inf), ["'rate'"]),
            (lambda: D.InverseGamma(np.nan, 1.0), ["'concentration'"]),
            (lambda: D.InverseGamma(np.ones((2, 3)), np.ones(2)), ["concentration", "rate", "(2, 3)", "(2,)"]),
        ],
        outside=(dict(concentration=np.array([0.5, 2.0]), rate=3.0), [0.0, -1e-300, -1.0, -np.inf], 0.5),
        f32_moment_rtol=4e-6,
    ),
    "Kumaraswamy": Family(
        grid=dict(concentration1=[0.3, 0.5, 1.0, 1.0, 2.0, 5.0, 4.0, 0.7],
                  concentration0=[0.5, 0.5, 1.0, 3.0, 2.0, 0.8, 6.0, 4.0]),
        scipy=lambda p: kumaraswamy(p["concentration1"], p["concentration0"]),
        values=lambda p: np.broadcast_to(np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6])[:, None],
                                         (7, len(p["concentration1"]))),
        # a log x is rounded to eps |a log x|, which moves (b - 1) log(1 - x^a) by |b - 1| x^a / (1 - x^a) times it.
        log_prob_terms=lambda p, x: [np.log(p["concentration1"]), np.log(p["concentration0"]),
                                     (p["concentration1"] - 1) * np.log(x),
                                     (p["concentration0"] - 1) * np.log1p(-x ** p["concentration1"]),
                                     np.abs(p["concentration0"] - 1) * p["concentration1"] * np.abs(np.log(x))
                                     * x ** p["concentration1"] / -np.expm1(p["concentration1"] * np.log(x))],
        entropy_terms=lambda p: [1 / p["concentration0"], 1 / p["concentration1"],
                                 2 * (sp.digamma(p["concentration0"] + 1) + 1),
                                 np.log(p["concentration1"]), np.log(p["concentration0"])],
        support=lambda p, x: (x > 0) & (x < 1),
        batch=dict(concentration1=np.array([[0.5], [1.0], [3.0]]), concentration0=np.array([0.5, 1.0, 2.0, 9.0])),
        sample=dict(concentration1=[0.5, 3.0], concentration0=[2.0, 0.7]),
        example=dict(concentration1=2.0, concentration0=3.0),
        invalid=[
            (lambda: D.Kumaraswamy(0.0, 1.0), ["'concentration1'"]),
            (lambda: D.Kumaraswamy(1.0, -1.0), ["'concentration0'"]),
            (lambda: D.Kumaraswamy(np.inf, 1.0), ["'concentration1'"]),
            (lambda: D.Kumaraswamy(np.ones(3), np.ones(4)), ["concentration1", "concentration0", "(3,)", "(4,)"]),
        ],
        outside=(dict(concentration1=np.array([0.5, 2.0]), concentration0=3.0), [-1e-9, 1 + 1e-9, 5.0], 0.3),
        gradcheck=(dict(concentration1=[0.8, 3.0], concentration0=[2.0, 0.6]), [0.3, 0.8]),
        grid_moments=True,
        f32_moment_rtol=2e-5,
    ),
}
NAMES = list(FAMILIES)


def grid_params(name, dtype):
    """(the family's grid in ``dtype``, the same values in float64)."""
    p = {k: np.asarray(v, dtype=dtype) for k, v in FAMILIES[name].grid.items()}
    return p, {k: v.astype(np.float64) for k, v in p.items()}


# ---- statistical checks --------------------------------------------------------------------


def assert_moments(x, mean, var, kurtosis_excess):
    """Sample mean and variance (axis 0) within Z standard errors of the analytic ones.

    SE of the mean is sqrt(var / n); SE of the sample variance is
    sqrt((mu4 - var^2) / n) = var sqrt((kurtosis_excess + 2) / n)."""
    n = x.shape[0]
    x = x.astype(np.float64)
    se_mean = np.sqrt(var / n)
    se_var = var * np.sqrt((kurtosis_excess + 2) / n)
    assert (np.abs(x.mean(0) - mean) <= Z * se_mean).all(), (x.mean(0) - mean) / se_mean
    assert (np.abs(x.var(0, ddof=1) - var) <= Z * se_var).all(), (x.var(0, ddof=1) - var) / se_var


def assert_mean_within_se(samples, expected, fd_error=1e-6):
    """The mean of ``samples`` within Z standard errors of ``expected`` (plus the error of
    a finite-difference reference, relative)."""
    se = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(samples.mean() - expected) <= Z * se + fd_error * (1 + abs(expected)), (
        samples.mean(), expected, se)


# ---- pathwise gradients ----------------------------------------------------------------------


def finite_differences(expectation, p, wrt, rel_step=1e-4):
    """First and second central differences of ``expectation(**p)`` in parameter ``wrt``."""
    h = rel_step * abs(p[wrt])

    def e(shift):
        return expectation(**{**p, wrt: p[wrt] + shift})

    return (e(h) - e(-h)) / (2 * h), (e(h) - 2 * e(0.0) + e(-h)) / h**2


def per_sample_derivatives(name, p, wrt, f, n, seed, dtype=np.float64):
    """First and second derivatives of f(z) in ``wrt``, one per sample.

    Every sample gets its own copy of the parameters (a batch of n), so the gradient
    of sum_i f(z_i) with respect to the copies is the vector of per-sample derivatives.
    """
    params = {k: scg.tensor(np.full(n, v, dtype=dtype), requires_grad=True) for k, v in p.items()}
    z = make(name, **params).rsample(rng=rng(seed))
    (g1,) = scg.grad(scg.sum(f(z)), [params[wrt]], create_graph=True)
    (g2,) = scg.grad(scg.sum(g1), [params[wrt]])
    return g1.data, g2.data


def square(z):
    return z * z


def identity(z):
    return z


# ---- the cases that cover Dirichlet (an event of shape (K,)) along with the scalar families --

# One setting of each family, Python floats or lists (dtype, gradient and seed checks).
EXAMPLES = {**{name: f.example for name, f in FAMILIES.items()}, "Dirichlet": dict(concentration=[0.5, 2.0, 3.0])}

# Invalid parameters and the fragments the ValueError must name.
INVALID = [case for f in FAMILIES.values() for case in f.invalid] + [
    (lambda: D.Dirichlet([1.0, 0.0, 2.0]), ["'concentration'"]),
    (lambda: D.Dirichlet([[1.0, 2.0], [1.0, -3.0]]), ["'concentration'", "-3"]),
    (lambda: D.Dirichlet(2.0), ["'concentration'", "last axis"]),
    (lambda: D.Dirichlet(np.ones((2, 0))), ["'concentration'", "last axis"]),
]

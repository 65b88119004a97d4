"""The KL pairs torch registers between families scg has: each finite one against numerical
integration (scipy.integrate.quad, or sums over the support) of p (log p - log q) with the
densities from scipy.stats, in float64; gradients by gradcheck; the pairs whose supports do not
nest are +inf; the lookup serves subclasses; refusals."""

import numpy as np
import pytest
import scipy.integrate as si
import scipy.special as sp
import scipy.stats as st
from families import f32_tol

import scg
import scg.distributions as D

# name -> (p factory, q factory, p args, q args, scipy p, scipy q, p's support (lo, hi) from its args)
# Factories take arrays (Tensors under gradcheck); each batch has 2 elements.
A = np.array
CONTINUOUS = {
    "Uniform-Uniform": (D.Uniform, D.Uniform, (A([0.1, -0.5]), A([0.7, 2.0])), (A([0.0, -1.0]), A([1.5, 3.0])),
                        lambda l, h: st.uniform(l, h - l), lambda l, h: st.uniform(l, h - l), lambda l, h: (l, h)),
    "Cauchy-Cauchy": (D.Cauchy, D.Cauchy, (A([0.3, -1.0]), A([1.2, 0.4])), (A([0.0, 2.0]), A([0.7, 3.0])),
                      st.cauchy, st.cauchy, lambda m, s: (-np.inf, np.inf)),
    "HalfNormal-HalfNormal": (D.HalfNormal, D.HalfNormal, (A([1.2, 0.4]),), (A([0.6, 2.5]),),
                              lambda s: st.halfnorm(scale=s), lambda s: st.halfnorm(scale=s), lambda s: (0, np.inf)),
    "Normal-Laplace": (D.Normal, D.Laplace, (A([0.3, -1.0]), A([1.2, 0.4])), (A([0.0, 2.0]), A([0.7, 3.0])),
                       st.norm, st.laplace, lambda m, s: (-np.inf, np.inf)),
    "Laplace-Normal": (D.Laplace, D.Normal, (A([0.3, -1.0]), A([1.2, 0.4])), (A([0.0, 2.0]), A([0.7, 3.0])),
                       st.laplace, st.norm, lambda m, s: (-np.inf, np.inf)),
    "Uniform-Normal": (D.Uniform, D.Normal, (A([0.1, -0.5]), A([0.7, 2.0])), (A([0.0, 2.0]), A([0.7, 3.0])),
                       lambda l, h: st.uniform(l, h - l), st.norm, lambda l, h: (l, h)),
    "Uniform-Gamma": (D.Uniform, D.Gamma, (A([0.0, 0.5]), A([0.7, 2.0])), (A([0.6, 2.0]), A([1.5, 3.0])),
                      lambda l, h: st.uniform(l, h - l), lambda a, b: st.gamma(a, scale=1 / b), lambda l, h: (l, h)),
    "Uniform-Exponential": (D.Uniform, D.Exponential, (A([0.0, 0.5]), A([0.7, 2.0])), (A([0.6, 2.0]),),
                            lambda l, h: st.uniform(l, h - l), lambda r: st.expon(scale=1 / r), lambda l, h: (l, h)),
    "Uniform-Beta": (D.Uniform, D.Beta, (A([0.0, 0.2]), A([1.0, 0.9])), (A([0.6, 2.0]), A([1.5, 3.0])),
                     lambda l, h: st.uniform(l, h - l), st.beta, lambda l, h: (l, h)),
    "Exponential-Gamma": (D.Exponential, D.Gamma, (A([0.6, 2.0]),), (A([0.6, 2.0]), A([1.5, 3.0])),
                          lambda r: st.expon(scale=1 / r), lambda a, b: st.gamma(a, scale=1 / b), lambda r: (0, np.inf)),
    "Exponential-Normal": (D.Exponential, D.Normal, (A([0.6, 2.0]),), (A([0.0, 2.0]), A([0.7, 3.0])),
                           lambda r: st.expon(scale=1 / r), st.norm, lambda r: (0, np.inf)),
    "Gamma-Exponential": (D.Gamma, D.Exponential, (A([2.0, 0.7]), A([1.5, 3.0])), (A([0.6, 2.0]),),
                          lambda a, b: st.gamma(a, scale=1 / b), lambda r: st.expon(scale=1 / r), lambda a, b: (0, np.inf)),
    "Gamma-Normal": (D.Gamma, D.Normal, (A([2.0, 0.7]), A([1.5, 3.0])), (A([0.0, 2.0]), A([0.7, 3.0])),
                     lambda a, b: st.gamma(a, scale=1 / b), st.norm, lambda a, b: (0, np.inf)),
    "Beta-Gamma": (D.Beta, D.Gamma, (A([2.0, 0.7]), A([1.5, 3.0])), (A([0.6, 2.0]), A([1.5, 3.0])),
                   st.beta, lambda a, b: st.gamma(a, scale=1 / b), lambda a, b: (0, 1)),
    "Beta-Exponential": (D.Beta, D.Exponential, (A([2.0, 0.7]), A([1.5, 3.0])), (A([0.6, 2.0]),),
                         st.beta, lambda r: st.expon(scale=1 / r), lambda a, b: (0, 1)),
    "Beta-Normal": (D.Beta, D.Normal, (A([2.0, 0.7]), A([1.5, 3.0])), (A([0.0, 2.0]), A([0.7, 3.0])),
                    st.beta, st.norm, lambda a, b: (0, 1)),
    "Beta-Uniform": (D.Beta, D.Uniform, (A([2.0, 0.7]), A([1.5, 3.0])), (A([0.0, -1.0]), A([1.0, 1.5])),
                     st.beta, lambda l, h: st.uniform(l, h - l), lambda a, b: (0, 1)),
}


def integrate_kl(sp_p, sp_q, support):
    def integrand(x):
        lp = sp_p.logpdf(x)
        return 0.0 if np.exp(lp) == 0 else np.exp(lp) * (lp - sp_q.logpdf(x))  # far tails: p underflows to 0

    lo, hi = support
    value, err = si.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)
    return value


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
def test_continuous_pair_against_numerical_integration(name):
    make_p, make_q, pa, qa, sp_p, sp_q, support = CONTINUOUS[name]
    kl = D.kl_divergence(make_p(*pa), make_q(*qa)).data
    assert kl.shape == (2,) and kl.dtype == np.float64
    for i in range(2):
        pi, qi = [a[i] for a in pa], [a[i] for a in qa]
        expected = integrate_kl(sp_p(*pi), sp_q(*qi), support(*pi))
        np.testing.assert_allclose(kl[i], expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
def test_continuous_pair_gradcheck(name):
    make_p, make_q, pa, qa, *_ = CONTINUOUS[name]
    if name.startswith("Uniform-"):  # off the edges 0 and 1, where E[log x] has an infinite slope
        pa = (pa[0] + 0.05, pa[1] - 0.05)
    order = 2 if name in ("Normal-Laplace", "Uniform-Gamma", "Uniform-Beta", "Cauchy-Cauchy") else 1
    n = len(pa)
    assert scg.gradcheck(lambda *a: D.kl_divergence(make_p(*a[:n]), make_q(*a[n:])), list(pa) + list(qa), order=order)


def test_uniform_at_zero_against_gamma_and_beta_is_finite():
    # E[log x] over [0, h) is log h - 1: finite although log x is not at 0
    kl = D.kl_divergence(D.Uniform(0.0, 1.0), D.Beta(2.0, 3.0)).data
    expected = -(1 * (0 - 1) + 2 * (0 - 1)) + np.log(sp.beta(2.0, 3.0))  # -(a-1)E log x - (b-1)E log(1-x) + log B
    np.testing.assert_allclose(kl, expected, rtol=1e-12)


# ---- discrete ----------------------------------------------------------------------------------


def test_binomial_binomial_against_the_sum():
    n, pp, qp = 7, np.array([0.2, 0.9]), np.array([0.5, 0.35])
    kl = D.kl_divergence(D.Binomial(n, probs=pp), D.Binomial(n, logits=sp.logit(qp))).data
    k = np.arange(n + 1)[:, None]
    lp, lq = st.binom(n, pp).logpmf(k), st.binom(n, qp).logpmf(k)
    np.testing.assert_allclose(kl, (np.exp(lp) * (lp - lq)).sum(0), rtol=1e-10)
    # p with more trials reaches counts q cannot: +inf there, as torch
    kl = D.kl_divergence(D.Binomial(np.array([5.0, 6.0]), probs=0.3), D.Binomial(5, probs=0.4)).data
    assert np.isfinite(kl[0]) and kl[1] == np.inf
    with pytest.raises(NotImplementedError, match="p.total_count >= q.total_count"):
        D.kl_divergence(D.Binomial(3, probs=0.3), D.Binomial(np.array([3.0, 4.0]), probs=0.4))
    assert scg.gradcheck(lambda a, b: D.kl_divergence(D.Binomial(4, logits=a), D.Binomial(4, probs=b)),
                         [np.array([0.3, -1.2]), np.array([0.25, 0.6])], order=2)


def test_one_hot_categorical_against_the_sum():
    p = np.array([[0.2, 0.3, 0.5], [0.0, 0.4, 0.6]])
    q = np.array([[0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    kl = D.kl_divergence(D.OneHotCategorical(probs=p), D.OneHotCategorical(logits=np.log(q))).data
    np.testing.assert_allclose(kl, sp.rel_entr(p, q).sum(-1), rtol=1e-12)
    assert scg.gradcheck(lambda a, b: D.kl_divergence(D.OneHotCategorical(logits=a), D.OneHotCategorical(logits=b)),
                         [np.array([0.3, -1.2, 0.1]), np.array([0.5, 0.0, 2.0])], order=2)


def test_bernoulli_poisson_against_the_sum():
    probs, rate = np.array([0.2, 0.0, 1.0]), np.array([0.4, 1.6, 2.5])
    kl = D.kl_divergence(D.Bernoulli(probs=probs), D.Poisson(rate)).data
    k = np.array([[0], [1]])
    pk = np.where(k == 1, probs, 1 - probs)
    expected = (sp.xlogy(pk, pk) - pk * st.poisson(rate).logpmf(k)).sum(0)
    np.testing.assert_allclose(kl, expected, rtol=1e-12)
    assert scg.gradcheck(lambda a, r: D.kl_divergence(D.Bernoulli(logits=a), D.Poisson(r)),
                         [np.array([0.3, -1.2]), np.array([0.7, 2.0])], order=2)


# ---- transformed --------------------------------------------------------------------------------


def test_transformed_pair_against_numerical_integration():
    mp, sp_, mq, sq = 0.3, 0.8, -0.5, 1.4

    def p(loc, scale):
        return D.TransformedDistribution(D.Normal(loc, scale), [D.SoftplusTransform(), D.AffineTransform(1.0, 2.0)])

    kl = D.kl_divergence(p(mp, sp_), p(mq, sq)).data

    def log_density(y, m, s):  # y = 1 + 2 softplus(x), x ~ N(m, s)
        u = (y - 1) / 2
        x = u + np.log(-np.expm1(-u))  # softplus^-1(u), without e^u overflowing
        return st.norm(m, s).logpdf(x) - np.log(2) - np.log(-np.expm1(-u))  # dx/du = 1 / (1 - e^-u)

    def integrand(y):
        lp = log_density(y, mp, sp_)
        return np.exp(lp) * (lp - log_density(y, mq, sq))

    expected = si.quad(integrand, 1, np.inf, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    np.testing.assert_allclose(kl, expected, rtol=1e-8)
    assert scg.gradcheck(lambda a, b: D.kl_divergence(p(a, b), p(0.2, 1.1)), [np.array([0.3, -0.4]), np.array([0.8, 1.5])],
                         order=2)


def test_transformed_pair_sums_the_base_axes_it_makes_events():
    loc_p, loc_q = np.array([[0.1, 0.5, -0.3], [1.0, 0.0, 0.2]]), np.zeros((2, 3))
    t = [D.StickBreakingTransform()]
    kl = D.kl_divergence(D.TransformedDistribution(D.Normal(loc_p, 1.5), t),
                         D.TransformedDistribution(D.Normal(loc_q, 0.5), t)).data
    normal_kl = np.log(0.5 / 1.5) + (1.5**2 + (loc_p - loc_q) ** 2) / (2 * 0.5**2) - 0.5  # per coordinate
    np.testing.assert_allclose(kl, normal_kl.sum(-1), rtol=1e-12)
    reshape = [D.ReshapeTransform((3,), (3, 1))]  # changes the event's rank: still the base's event axes
    kl = D.kl_divergence(D.TransformedDistribution(D.Normal(loc_p, 1.5), reshape),
                         D.TransformedDistribution(D.Normal(loc_q, 0.5), reshape)).data
    np.testing.assert_allclose(kl, normal_kl.sum(-1), rtol=1e-12)


def test_transformed_pair_refuses_different_or_non_bijective_transforms():
    base = D.Normal(np.zeros(2), 1.0)
    with pytest.raises(NotImplementedError, match="the same transforms"):
        D.kl_divergence(D.TransformedDistribution(base, D.ExpTransform()),
                        D.TransformedDistribution(base, D.SoftplusTransform()))
    with pytest.raises(NotImplementedError, match="bijective"):
        D.kl_divergence(D.TransformedDistribution(base, D.AbsTransform()),
                        D.TransformedDistribution(base, D.AbsTransform()))
    # equal transforms built separately are the same transforms (torch compares them so too)
    kl = D.kl_divergence(D.TransformedDistribution(base, D.PowerTransform(2.0)),
                         D.TransformedDistribution(D.Normal(1.0, 1.0), D.PowerTransform(2.0)))
    np.testing.assert_allclose(kl.data, 0.5, rtol=1e-14)


# ---- support mismatches, dispatch, settings ----------------------------------------------------

INFINITE = [
    (D.Normal(0.0, 1.0), [D.Uniform(-1.0, 1.0), D.Exponential(1.0), D.Gamma(2.0, 1.0), D.Beta(2.0, 2.0)]),
    (D.Laplace(0.0, 1.0), [D.Uniform(-1.0, 1.0), D.Exponential(1.0), D.Gamma(2.0, 1.0), D.Beta(2.0, 2.0)]),
    (D.Exponential(1.0), [D.Uniform(0.0, 5.0), D.Beta(2.0, 2.0)]),
    (D.Gamma(2.0, 1.0), [D.Uniform(0.0, 5.0), D.Beta(2.0, 2.0)]),
    (D.Poisson(1.0), [D.Bernoulli(probs=0.5), D.Binomial(10, probs=0.5)]),
    (D.Uniform(-0.5, 0.5), [D.Exponential(1.0), D.Gamma(2.0, 1.0), D.Beta(2.0, 2.0), D.Uniform(0.0, 1.0)]),
    (D.Beta(2.0, 2.0), [D.Uniform(0.1, 1.0), D.Uniform(0.0, 0.9)]),
]


@pytest.mark.parametrize("p, qs", INFINITE, ids=[type(p).__name__ for p, _ in INFINITE])
def test_pairs_whose_supports_do_not_nest_are_infinite(p, qs):
    for q in qs:
        kl = D.kl_divergence(p, q)
        assert kl.data == np.inf, (p, q)


def test_infinite_where_only_some_elements_do_not_nest_and_gradients_stay_finite():
    low = scg.tensor(np.array([0.2, -0.1]), requires_grad=True)
    kl = D.kl_divergence(D.Uniform(low, 0.9), D.Beta(2.0, 3.0))
    assert np.isfinite(kl.data[0]) and kl.data[1] == np.inf
    (g,) = scg.grad(kl[0], [low])
    assert np.all(np.isfinite(g.data)) and g.data[1] == 0


def test_the_lookup_serves_subclasses():
    class MyUniform(D.Uniform):
        pass

    class MyNormal(D.Normal):
        pass

    class MyBinomial(D.Binomial):
        pass

    expected = D.kl_divergence(D.Uniform(0.0, 1.0), D.Normal(0.5, 2.0)).data
    np.testing.assert_array_equal(D.kl_divergence(MyUniform(0.0, 1.0), MyNormal(0.5, 2.0)).data, expected)
    assert D.kl_divergence(MyNormal(0.0, 1.0), MyUniform(0.0, 1.0)).data == np.inf
    np.testing.assert_array_equal(D.kl_divergence(MyBinomial(3, probs=0.2), D.Binomial(3, probs=0.4)).data,
                                  D.kl_divergence(D.Binomial(3, probs=0.2), D.Binomial(3, probs=0.4)).data)
    # LogNormal is a TransformedDistribution: against a plain one with the same transform, the generic pair
    plain = D.TransformedDistribution(D.Normal(0.0, 2.0), D.ExpTransform())
    np.testing.assert_allclose(D.kl_divergence(D.LogNormal(1.0, 1.0), plain).data,
                               np.log(2.0) + (1 + 1) / 8 - 0.5, rtol=1e-14)


@pytest.mark.parametrize("validate", [False, True])
def test_validation_does_not_change_the_values(validate):
    pairs = [(D.Uniform(0.1, 0.7, validate_args=validate), D.Beta(2.0, 3.0, validate_args=validate)),
             (D.Cauchy(0.3, 1.2, validate_args=validate), D.Cauchy(0.0, 0.7, validate_args=validate)),
             (D.Normal(0.3, 1.2, validate_args=validate), D.Laplace(0.0, 0.7, validate_args=validate))]
    for p, q in pairs:
        p0, q0 = (type(d)(*args, validate_args=not validate) for d, args in
                  ((p, _args(p)), (q, _args(q))))
        assert D.kl_divergence(p, q).data == D.kl_divergence(p0, q0).data


def _args(d):
    names = {"Uniform": ("low", "high"), "Beta": ("concentration1", "concentration0"), "Cauchy": ("loc", "scale"),
             "Normal": ("loc", "scale"), "Laplace": ("loc", "scale")}[type(d).__name__]
    return [getattr(d, n).data for n in names]


def test_float32_stays_float32():
    for name in ("Normal-Laplace", "Uniform-Gamma", "Beta-Normal", "Cauchy-Cauchy"):
        make_p, make_q, pa, qa, *_ = CONTINUOUS[name]
        k64 = D.kl_divergence(make_p(*pa), make_q(*qa)).data
        k32 = D.kl_divergence(make_p(*[a.astype(np.float32) for a in pa]), make_q(*[a.astype(np.float32) for a in qa]))
        assert k32.dtype == np.float32, name
        np.testing.assert_allclose(k32.data, k64, rtol=0, atol=f32_tol(k64 * 10).max())


def test_kl_pair_count_matches_torchs_registry_for_the_families_scg_has():
    from scg.distributions import kl

    # torch 2.x registers these 50 pairs between families scg has (listed here: CI has no torch)
    torch_pairs = {
        ("Bernoulli", "Bernoulli"), ("Bernoulli", "Poisson"), ("Beta", "Beta"), ("Beta", "Exponential"),
        ("Beta", "Gamma"), ("Beta", "Normal"), ("Beta", "Uniform"), ("Binomial", "Binomial"),
        ("Categorical", "Categorical"), ("Cauchy", "Cauchy"), ("Dirichlet", "Dirichlet"), ("Exponential", "Beta"),
        ("Exponential", "Exponential"), ("Exponential", "Gamma"), ("Exponential", "Normal"),
        ("Exponential", "Uniform"), ("Gamma", "Beta"), ("Gamma", "Exponential"), ("Gamma", "Gamma"),
        ("Gamma", "Normal"), ("Gamma", "Uniform"), ("Geometric", "Geometric"), ("HalfNormal", "HalfNormal"),
        ("Independent", "Independent"), ("Laplace", "Beta"), ("Laplace", "Exponential"), ("Laplace", "Gamma"),
        ("Laplace", "Laplace"), ("Laplace", "Normal"), ("Laplace", "Uniform"),
        ("LowRankMultivariateNormal", "LowRankMultivariateNormal"), ("LowRankMultivariateNormal", "MultivariateNormal"),
        ("MultivariateNormal", "LowRankMultivariateNormal"), ("MultivariateNormal", "MultivariateNormal"),
        ("Normal", "Beta"), ("Normal", "Exponential"), ("Normal", "Gamma"), ("Normal", "Laplace"),
        ("Normal", "Normal"), ("Normal", "Uniform"), ("OneHotCategorical", "OneHotCategorical"),
        ("Poisson", "Bernoulli"), ("Poisson", "Binomial"), ("Poisson", "Poisson"),
        ("TransformedDistribution", "TransformedDistribution"), ("Uniform", "Beta"), ("Uniform", "Exponential"),
        ("Uniform", "Gamma"), ("Uniform", "Normal"), ("Uniform", "Uniform"),
    }

    def resolves(a, b):
        return any((tp, tq) in kl._KL for tp in getattr(D, a).__mro__ for tq in getattr(D, b).__mro__)

    assert len(torch_pairs) == 50
    assert [pair for pair in sorted(torch_pairs) if not resolves(*pair)] == []

"""Closed-form KL divergences against Monte Carlo estimates E_p[log p - log q]
(4 standard errors, fixed seeds), their gradients against finite differences,
and the error for an unregistered pair."""

import numpy as np
import pytest

import scg
import scg.distributions as D

PAIRS = [
    ("Normal", lambda: D.Normal(np.array([0.0, 1.0]), np.array([1.0, 0.5])),
     lambda: D.Normal(np.array([0.5, -1.0]), np.array([2.0, 1.5]))),
    ("Gamma", lambda: D.Gamma(np.array([2.0, 0.7]), np.array([3.0, 1.0])),
     lambda: D.Gamma(np.array([1.0, 1.5]), np.array([0.5, 2.0]))),
    ("Beta", lambda: D.Beta(np.array([2.0, 0.6]), np.array([3.0, 1.2])),
     lambda: D.Beta(np.array([0.7, 2.0]), np.array([1.5, 2.0]))),
    ("Dirichlet", lambda: D.Dirichlet(np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]])),
     lambda: D.Dirichlet(np.array([[2.0, 0.5, 1.0], [1.0, 1.0, 1.0]]))),
    ("Exponential", lambda: D.Exponential(np.array([2.0, 0.3])), lambda: D.Exponential(np.array([0.5, 0.3]))),
    ("Bernoulli", lambda: D.Bernoulli(probs=np.array([0.3, 0.0, 0.9])),
     lambda: D.Bernoulli(logits=np.array([1.2, -0.4, 0.0]))),
    ("Categorical", lambda: D.Categorical(logits=np.array([[0.0, 1.0, -np.inf], [0.2, 0.2, 0.2]])),
     lambda: D.Categorical(probs=np.array([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]]))),
]


@pytest.mark.parametrize("name, make_p, make_q", PAIRS, ids=[p[0] for p in PAIRS])
def test_kl_matches_monte_carlo(name, make_p, make_q):
    p, q = make_p(), make_q()
    kl = D.kl_divergence(p, q).data
    assert kl.shape == p.batch_shape
    x = p.sample((100_000,), rng=np.random.default_rng(1))
    ratio = (p.log_prob(x) - q.log_prob(x)).data
    mc, se = ratio.mean(axis=0), ratio.std(axis=0, ddof=1) / np.sqrt(len(ratio))
    assert np.all(np.abs(kl - mc) <= 4 * se + 1e-12), (kl, mc, se)
    assert np.all(kl >= 0)


def test_kl_of_a_distribution_with_itself_is_zero():
    for _, make_p, _ in PAIRS:
        p = make_p()
        np.testing.assert_allclose(D.kl_divergence(p, p).data, 0.0, atol=1e-12)


def test_kl_normal_gradient_against_finite_differences():
    def f(loc, scale):
        return D.kl_divergence(D.Normal(loc, scale), D.Normal(0.3, 1.7))

    assert scg.gradcheck(f, [np.array([0.2, -1.0]), np.array([0.8, 2.0])], order=2)


def test_kl_beta_gradient_against_finite_differences():
    def f(a, b):
        return D.kl_divergence(D.Beta(a, b), D.Beta(1.3, 0.8))

    assert scg.gradcheck(f, [np.array([0.9, 2.5]), np.array([1.7, 0.6])], order=1)


def test_kl_broadcasts_batch_shapes():
    kl = D.kl_divergence(D.Normal(np.zeros(3), 1.0), D.Normal(0.0, np.ones((2, 1))))
    assert kl.shape == (2, 3)


def test_unregistered_pair_names_both_families():
    with pytest.raises(NotImplementedError, match=r"Normal \|\| StudentT.*registered pairs"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.StudentT(3.0))


def test_register_kl_refuses_a_class_that_is_not_a_distribution(monkeypatch):
    from scg.distributions import kl

    monkeypatch.setattr(kl, "_KL", dict(kl._KL))  # leave the real table as it was
    before = dict(kl._KL)
    with pytest.raises(TypeError, match=r"register_kl: type_q must be a Distribution subclass; got <class 'float'>"):
        D.register_kl(D.Normal, float)
    with pytest.raises(TypeError, match=r"register_kl: type_p must be a Distribution subclass; got .*Normal"):
        D.register_kl(D.Normal(0.0, 1.0), D.Normal)  # an instance, not a class
    assert kl._KL == before  # nothing was registered


def test_register_kl_refuses_a_pair_registered_twice(monkeypatch):
    from scg.distributions import kl

    monkeypatch.setattr(kl, "_KL", dict(kl._KL))
    before = kl._KL[(D.Normal, D.Normal)]
    with pytest.raises(ValueError, match=r"Normal-Normal already has a KL divergence, scg\.distributions\.normal\."):
        D.register_kl(D.Normal, D.Normal)(lambda p, q: p.loc * 0)
    assert kl._KL[(D.Normal, D.Normal)] is before  # the first registration stands


def test_a_family_registers_its_pair_in_its_own_module_and_subclasses_inherit_it(monkeypatch):
    from scg.distributions import kl

    monkeypatch.setattr(kl, "_KL", dict(kl._KL))

    class Shifted(D.Normal):  # a new family, declared with its KL where it is defined
        pass

    @D.register_kl(Shifted, D.Normal)
    def _shifted_normal(p, q):
        return p.loc * 0 + 7.0

    p, q = Shifted(np.zeros(2), 1.0), D.Normal(1.0, 2.0)
    np.testing.assert_array_equal(D.kl_divergence(p, q).data, [7.0, 7.0])
    # (Normal, Shifted) is not registered: the lookup walks the MROs to Normal-Normal.
    expected = np.log(1.0 / 2.0) + (4.0 + 1.0) / (2 * 1.0) - 0.5  # log(s_q/s_p) + (s_p^2 + d^2)/(2 s_q^2) - 1/2
    np.testing.assert_allclose(D.kl_divergence(D.Normal(1.0, 2.0), Shifted(0.0, 1.0)).data, expected, rtol=1e-14)


def test_every_pair_is_registered_once_and_kl_imports_no_family():
    import ast
    import pathlib

    from scg.distributions import kl

    names = {(a.__name__, b.__name__) for a, b in kl._KL}
    same = {(n, n) for n in ("Normal", "Gamma", "Exponential", "Beta", "Dirichlet", "Bernoulli", "Categorical",
                             "LogNormal", "Laplace", "Independent", "Poisson", "Geometric", "GaussianBase", "Uniform",
                             "Cauchy", "HalfNormal", "Binomial", "OneHotCategorical", "TransformedDistribution")}
    cross = {("Normal", "Laplace"), ("Laplace", "Normal"), ("Bernoulli", "Poisson"), ("Poisson", "Bernoulli"),
             ("Poisson", "Binomial")}
    cross |= {(a, b) for a in ("Uniform", "Normal", "Laplace", "Exponential", "Gamma", "Beta")
              for b in ("Uniform", "Normal", "Exponential", "Gamma", "Beta") if a != b}
    wrappers = {("ExpandedDistribution", "Distribution"), ("Distribution", "ExpandedDistribution")}
    gumbel = {(n, "Gumbel") for n in ("Gumbel", "Normal", "Exponential", "Gamma", "Uniform")} | {
        ("Gumbel", n) for n in ("Normal", "Exponential", "Gamma", "Uniform", "Beta")}
    cb = {(n, "ContinuousBernoulli") for n in ("ContinuousBernoulli", "Beta", "Uniform", "Exponential", "Gamma",
                                               "Gumbel", "Laplace", "Normal")} | {
        ("ContinuousBernoulli", n) for n in ("Exponential", "Normal", "Uniform")}
    assert names == same | cross | wrappers | gumbel | cb
    tree = ast.parse(pathlib.Path(kl.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {None, "distribution"}  # `from .. import ops` and `from .distribution import ...` only
    mvn = D.MultivariateNormal(np.zeros(2), covariance_matrix=np.eye(2))
    low = D.LowRankMultivariateNormal(np.ones(2), np.zeros((2, 1)), np.ones(2))
    for p, q in ((mvn, low), (low, mvn), (low, low), (mvn, mvn)):  # the four Gaussian pairs still resolve
        np.testing.assert_allclose(D.kl_divergence(p, q).data, 0.0 if p is q else 1.0, atol=1e-12)

"""Independent, the transforms, TransformedDistribution and the new KL pairs.

Expected values from scipy.stats or formulas written out here; Monte Carlo checks with
fixed seeds and 4 standard errors."""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from families import Z, rng

import scg
import scg.distributions as D

# ---- Independent -------------------------------------------------------------------------------


def test_independent_shapes_log_prob_entropy_and_moments():
    loc = np.arange(24.0).reshape(2, 3, 4) / 10
    scale = np.linspace(0.5, 2.0, 24).reshape(2, 3, 4)
    d = D.Independent(D.Normal(loc, scale), 2)
    assert d.batch_shape == (2,) and d.event_shape == (3, 4)
    x = d.sample((5,), rng=rng(1))
    assert x.shape == (5, 2, 3, 4)
    lp = d.log_prob(x)
    assert lp.shape == (5, 2)
    np.testing.assert_allclose(lp.data, st.norm(loc, scale).logpdf(x.data).sum(axis=(-2, -1)), rtol=1e-12)
    np.testing.assert_allclose(d.entropy().data, st.norm(loc, scale).entropy().sum(axis=(-2, -1)), rtol=1e-12)
    np.testing.assert_allclose(d.mean.data, loc)
    np.testing.assert_allclose(d.variance.data, scale**2)
    assert d.has_rsample and not d.has_enumerate_support
    # the base's support on every element of the two reinterpreted axes (torch's independent(real, 2))
    assert d.support.base_constraint is D.Normal(0.0, 1.0).support and d.support.event_dim == 2
    assert str(d.support) == str(D.Normal(0.0, 1.0).support)  # messages unchanged


def test_to_event():
    base = D.Normal(np.zeros((2, 3)), 1.0)
    assert base.to_event(0) is base
    one = base.to_event(1)
    assert isinstance(one, D.Independent) and one.batch_shape == (2,) and one.event_shape == (3,)
    every = base.to_event()
    assert every.batch_shape == () and every.event_shape == (2, 3)
    np.testing.assert_allclose(every.log_prob(np.ones((2, 3))).data, 6 * st.norm.logpdf(1.0), rtol=1e-12)
    # Dirichlet already has an event axis: the reinterpreted batch axis goes in front of it.
    dirichlet = D.Dirichlet(np.ones((4, 3))).to_event(1)
    assert dirichlet.batch_shape == () and dirichlet.event_shape == (4, 3)


def test_independent_rsample_gradient_flows_and_sample_does_not():
    loc = scg.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    d = D.Normal(loc, 1.0).to_event(1)
    assert d.rsample(rng=rng()).requires_grad and not d.sample(rng=rng()).requires_grad
    eps = rng(3).standard_normal(3)
    (g,) = scg.grad(scg.sum(d.rsample(rng=rng(3)) ** 2), [loc])
    np.testing.assert_allclose(g.data, 2 * (loc.data + eps), rtol=1e-12)


def test_independent_log_prob_gradcheck_second_order():
    def f(loc, scale, x):
        return D.Independent(D.Laplace(loc, scale), 1).log_prob(x)

    assert scg.gradcheck(f, [np.array([[0.2, -1.0], [0.5, 0.0]]), np.array([0.7, 1.3]),
                             np.array([1.0, 0.4])], order=2)


def test_independent_enumerates_the_joint_support_of_its_event():
    b = D.Bernoulli(probs=np.array([0.2, 0.7]))
    same = D.Independent(b, 0)
    assert same.has_enumerate_support and not same.has_rsample
    np.testing.assert_array_equal(same.enumerate_support().data, b.enumerate_support().data)
    joint = D.Independent(b, 1)
    assert joint.has_enumerate_support
    np.testing.assert_array_equal(joint.enumerate_support().data, [[0, 0], [0, 1], [1, 0], [1, 1]])
    probs = np.exp(joint.log_prob(joint.enumerate_support()).data)
    np.testing.assert_allclose(probs, [0.8 * 0.3, 0.8 * 0.7, 0.2 * 0.3, 0.2 * 0.7], rtol=1e-14)
    # batch axes stay batch axes: (K^E,) + batch + event
    cat = D.Categorical(logits=np.zeros((4, 2, 3))).to_event(1)
    assert cat.enumerate_support().shape == (9, 4, 2) and cat.enumerate_support(expand=False).shape == (9, 1, 2)
    with pytest.raises(ValueError, match=r"2\^17 = 131072 values, above the limit of 65536"):
        D.Bernoulli(logits=np.zeros(17)).to_event(1).enumerate_support()
    x = joint.sample((7,), rng=rng())
    assert x.shape == (7, 2)
    np.testing.assert_allclose(joint.log_prob(x).data, st.bernoulli([0.2, 0.7]).logpmf(x.data).sum(-1))


@pytest.mark.parametrize("n", [3, -1, 1.0, True, None])
def test_independent_rejects_bad_reinterpreted_batch_ndims(n):
    with pytest.raises(ValueError, match="'reinterpreted_batch_ndims'"):
        D.Independent(D.Normal(np.zeros((2, 3)), 1.0), n)


def test_independent_rejects_a_base_that_is_not_a_distribution():
    with pytest.raises(ValueError, match="'base_distribution'"):
        D.Independent(np.zeros(3), 1)


# ---- transforms ----------------------------------------------------------------------------------

X = np.array([-3.0, -0.7, 0.0, 0.4, 2.5])
TRANSFORMS = [
    ("Exp", lambda: D.ExpTransform(), np.exp, lambda x: x),
    ("Sigmoid", lambda: D.SigmoidTransform(), sp.expit, lambda x: np.log(sp.expit(x) * sp.expit(-x))),
    ("Tanh", lambda: D.TanhTransform(), np.tanh, lambda x: np.log1p(-np.tanh(x) ** 2)),
    ("Affine", lambda: D.AffineTransform(1.5, -2.0), lambda x: 1.5 - 2.0 * x, lambda x: np.full_like(x, np.log(2.0))),
    ("Compose", lambda: D.ComposeTransform([D.AffineTransform(0.5, 3.0), D.TanhTransform()]),
     lambda x: np.tanh(0.5 + 3 * x), lambda x: np.log(3.0) + np.log1p(-np.tanh(0.5 + 3 * x) ** 2)),
]


@pytest.mark.parametrize("name,build,forward,ladj", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_transform_forward_inverse_and_jacobian(name, build, forward, ladj):
    t = build()
    y = t(X)
    np.testing.assert_allclose(y.data, forward(X), rtol=1e-12)
    np.testing.assert_allclose(t.inv(y).data, X, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t.log_abs_det_jacobian(scg.tensor(X), y).data, ladj(X), rtol=1e-10, atol=1e-12)
    # the inverse's Jacobian is the reciprocal
    np.testing.assert_allclose(t.inv.log_abs_det_jacobian(y, scg.tensor(X)).data, -ladj(X), rtol=1e-10, atol=1e-12)
    assert t.inv.inv is t


@pytest.mark.parametrize("name,build,forward,ladj", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_transform_gradcheck_second_order(name, build, forward, ladj):
    t = build()

    def f(x):
        y = t(x)
        return [y, t.log_abs_det_jacobian(x, y), t.inv(y * 0.9 + 0.05 * (name != "Affine"))]

    assert scg.gradcheck(f, [X / 2], order=2)


def test_affine_transform_parameters_are_differentiable_and_validated():
    def f(loc, scale, x):
        t = D.AffineTransform(loc, scale)
        y = t(x)
        return [y, t.log_abs_det_jacobian(x, y), t.inv(x)]

    assert scg.gradcheck(f, [np.array([0.3, -1.0]), np.array([2.0, -0.5]), np.array([0.7, 1.1])], order=2)
    with pytest.raises(ValueError, match="'scale'"):
        D.AffineTransform(0.0, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="'loc'"):
        D.AffineTransform(np.inf, 1.0)
    with pytest.raises(ValueError, match="'scale'"):
        D.AffineTransform(0.0, np.nan)


def test_saturating_transforms_keep_draws_inside_the_open_interval():
    for t, lo, hi in ((D.SigmoidTransform(), 0, 1), (D.TanhTransform(), -1, 1)):
        for dtype in (np.float32, np.float64):
            y = t(scg.tensor(np.array([-1e3, -40.0, 40.0, 1e3], dtype=dtype)))
            assert y.dtype == dtype and ((y.data > lo) & (y.data < hi)).all()


# ---- TransformedDistribution ------------------------------------------------------------------


def test_transformed_log_prob_matches_scipy_and_formulas():
    m, s = np.array([0.3, -1.0]), np.array([0.8, 1.7])
    y = np.array([[0.2], [1.0], [4.0]]) * np.ones(2)
    lognormal = D.TransformedDistribution(D.Normal(m, s), D.ExpTransform())
    np.testing.assert_allclose(lognormal.log_prob(y).data, st.lognorm(s=s, scale=np.exp(m)).logpdf(y), rtol=1e-12)
    affine = D.TransformedDistribution(D.Normal(m, s), [D.AffineTransform(2.0, -3.0)])
    np.testing.assert_allclose(affine.log_prob(y).data, st.norm(2 - 3 * m, 3 * s).logpdf(y), rtol=1e-12)
    # Exp then affine: a shifted, scaled log-normal; the list and ComposeTransform agree.
    shifted = st.lognorm(s=s, loc=1.0, scale=2.0 * np.exp(m))
    y2 = y + 1.5
    for transforms in ([D.ExpTransform(), D.AffineTransform(1.0, 2.0)],
                       D.ComposeTransform([D.ExpTransform(), D.AffineTransform(1.0, 2.0)])):
        d = D.TransformedDistribution(D.Normal(m, s), transforms)
        np.testing.assert_allclose(d.log_prob(y2).data, shifted.logpdf(y2), rtol=1e-12)
    u = np.array([0.05, 0.3, 0.5, 0.97])[:, None]
    sig = D.TransformedDistribution(D.Normal(m, s), D.SigmoidTransform())
    np.testing.assert_allclose(sig.log_prob(u).data, st.norm(m, s).logpdf(sp.logit(u)) - np.log(u * (1 - u)), rtol=1e-12)
    th = D.TransformedDistribution(D.Normal(m, s), D.TanhTransform())
    v = 2 * u - 1
    np.testing.assert_allclose(th.log_prob(v).data, st.norm(m, s).logpdf(np.arctanh(v)) - np.log1p(-v * v), rtol=1e-12)
    # Uniform(0, 1) pushed through logit (the inverse sigmoid) is the standard logistic.
    logistic = D.TransformedDistribution(D.Uniform(0.0, 1.0), D.SigmoidTransform().inv)
    np.testing.assert_allclose(logistic.log_prob(X).data, st.logistic.logpdf(X), rtol=1e-12)


def test_transformed_outside_the_image_is_minus_inf_or_raises_under_validation():
    transforms = [D.ExpTransform(), D.AffineTransform(1.0, 2.0)]  # image (1, inf)
    d = D.TransformedDistribution(D.Normal(0.0, 1.0), transforms, validate_args=False)
    lp = d.log_prob(np.array([0.5, 1.0, -3.0, 2.0]))
    assert (lp.data[:3] == -np.inf).all() and np.isfinite(lp.data[3])
    x = scg.tensor(np.array([0.5, 2.0]), requires_grad=True)
    (g,) = scg.grad(scg.sum(scg.where(np.array([False, True]), d.log_prob(x), 0.0)), [x])
    assert np.isfinite(g.data).all()  # no NaN leaks from the value outside
    strict = D.TransformedDistribution(D.Normal(0.0, 1.0), transforms)  # validation is on by default
    with pytest.raises(ValueError, match="outside the support"):
        strict.log_prob(0.5)
    sig = D.TransformedDistribution(D.Normal(0.0, 1.0), D.SigmoidTransform(), validate_args=False)
    assert (sig.log_prob(np.array([0.0, 1.0, 1.5, -0.1])).data == -np.inf).all()


def test_transformed_rsample_through_transforms_and_gradcheck():
    eps = rng(5).standard_normal(4)

    def f(loc, scale, a, b):
        d = D.TransformedDistribution(D.Normal(loc, scale), [D.AffineTransform(a, b), D.TanhTransform()])
        return d.rsample((4,), rng=rng(5))

    args = [np.array(0.3), np.array(0.8), np.array(-0.2), np.array(0.6)]
    np.testing.assert_allclose(f(*(scg.tensor(v) for v in args)).data, np.tanh(-0.2 + 0.6 * (0.3 + 0.8 * eps)),
                               rtol=1e-12)
    assert scg.gradcheck(f, args, order=2)

    def g(loc, scale, y):
        return D.TransformedDistribution(D.Normal(loc, scale), [D.SigmoidTransform()]).log_prob(y)

    assert scg.gradcheck(g, [np.array([0.3, -0.4]), np.array([0.8, 1.5]), np.array([0.2, 0.9])], order=2)


def test_transformed_samples_follow_the_pushed_forward_law():
    n = 40_000
    d = D.TransformedDistribution(D.Normal(0.2, 0.5), [D.ExpTransform(), D.AffineTransform(1.0, 2.0)])
    y = d.sample((n,), rng=rng(8)).data
    ref = st.lognorm(s=0.5, loc=1.0, scale=2.0 * np.exp(0.2))
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert abs((y <= ref.ppf(q)).mean() - q) <= Z * np.sqrt(q * (1 - q) / n)


def test_transformed_shapes_dtypes_and_event_dims():
    d = D.TransformedDistribution(D.Normal(np.zeros((2, 3), np.float32), np.float32(1.0)), D.ExpTransform())
    assert d.batch_shape == (2, 3) and d.event_shape == () and d.dtype == np.float32 and d.has_rsample
    y = d.rsample((5,), rng=rng())
    assert y.shape == (5, 2, 3) and y.dtype == np.float32 and d.log_prob(y).dtype == np.float32
    np.testing.assert_allclose(d.log_prob(y).data, st.lognorm(s=1.0).logpdf(y.data.astype(np.float64)), rtol=1e-5)
    # An affine map over a whole axis makes that axis the event.
    e = D.TransformedDistribution(D.Normal(np.zeros((2, 3)), 1.0), D.AffineTransform(0.0, np.array([1.0, 2.0, 4.0]), event_dim=1))
    assert e.batch_shape == (2,) and e.event_shape == (3,)
    x = np.ones(3)
    np.testing.assert_allclose(e.log_prob(x).data, np.full(2, st.norm(0, [1, 2, 4]).logpdf(x).sum()), rtol=1e-12)
    # No mean/variance/entropy in general: a clear error, not a wrong number.
    with pytest.raises(NotImplementedError):
        d.entropy()


def test_transformed_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'base_distribution'"):
        D.TransformedDistribution("normal", D.ExpTransform())
    with pytest.raises(ValueError, match="'transforms'"):
        D.TransformedDistribution(D.Normal(0.0, 1.0), [D.ExpTransform(), np.exp])
    with pytest.raises(ValueError, match="'transforms'"):
        D.TransformedDistribution(D.Normal(0.0, 1.0), D.AffineTransform(0.0, 1.0, event_dim=1))


# ---- KL divergences ------------------------------------------------------------------------------

KL_PAIRS = [
    ("LogNormal", lambda: D.LogNormal(np.array([0.0, 1.0]), np.array([1.0, 0.5])),
     lambda: D.LogNormal(np.array([0.5, -1.0]), np.array([2.0, 1.5]))),
    ("Laplace", lambda: D.Laplace(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 2.0])),
     lambda: D.Laplace(np.array([0.5, -1.0, 2.0]), np.array([2.0, 1.5, 0.7]))),
    ("Independent-Normal", lambda: D.Normal(np.array([[0.0, 1.0], [2.0, 0.3]]), np.array([1.0, 0.5])).to_event(1),
     lambda: D.Normal(np.array([0.5, -1.0]), np.array([[2.0, 1.5], [1.0, 1.0]])).to_event(1)),
    ("Independent-Gamma", lambda: D.Gamma(np.array([2.0, 0.7, 3.0]), 1.5).to_event(1),
     lambda: D.Gamma(np.array([1.0, 1.5, 2.0]), np.array([0.5, 2.0, 1.0])).to_event(1)),
]


@pytest.mark.parametrize("name, make_p, make_q", KL_PAIRS, ids=[p[0] for p in KL_PAIRS])
def test_kl_matches_monte_carlo(name, make_p, make_q):
    p, q = make_p(), make_q()
    kl = D.kl_divergence(p, q).data
    assert kl.shape == p.batch_shape
    x = p.sample((100_000,), rng=rng(1))
    ratio = (p.log_prob(x) - q.log_prob(x)).data
    mc, se = ratio.mean(axis=0), ratio.std(axis=0, ddof=1) / np.sqrt(len(ratio))
    assert np.all(np.abs(kl - mc) <= Z * se + 1e-12), (kl, mc, se)
    np.testing.assert_allclose(D.kl_divergence(p, p).data, 0.0, atol=1e-12)


def test_kl_closed_forms_by_hand():
    # LogNormal: the KL of the underlying Normals.
    m1, s1, m2, s2 = 0.3, 0.7, -0.5, 1.9
    expected = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    np.testing.assert_allclose(D.kl_divergence(D.LogNormal(m1, s1), D.LogNormal(m2, s2)).data, expected, rtol=1e-12)
    # Laplace: log(b2/b1) + |m1-m2|/b2 + (b1/b2) exp(-|m1-m2|/b1) - 1, by quadrature.
    b1, b2 = 0.7, 1.9
    from scipy.integrate import quad

    p, q = st.laplace(m1, b1), st.laplace(m2, b2)
    numeric = quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -40, 40, points=[m1, m2], limit=200)[0]
    np.testing.assert_allclose(D.kl_divergence(D.Laplace(m1, b1), D.Laplace(m2, b2)).data, numeric, rtol=1e-8)
    # Independent: the sum over the reinterpreted axes.
    p = D.Normal(np.array([0.0, 1.0, 2.0]), 1.0).to_event(1)
    q = D.Normal(0.0, np.array([1.0, 2.0, 0.5])).to_event(1)
    per_axis = np.log([1.0, 2.0, 0.5]) + (1 + np.array([0.0, 1.0, 4.0])) / (2 * np.array([1.0, 4.0, 0.25])) - 0.5
    np.testing.assert_allclose(D.kl_divergence(p, q).data, per_axis.sum(), rtol=1e-12)


def test_kl_gradients_second_order():
    def laplace(m1, b1, m2, b2):
        return D.kl_divergence(D.Laplace(m1, b1), D.Laplace(m2, b2))

    assert scg.gradcheck(laplace, [np.array([0.2, -1.0]), np.array([0.8, 2.0]), np.array([0.5, 1.0]),
                                   np.array([1.3, 0.4])], order=2)

    def lognormal(m1, s1):
        return D.kl_divergence(D.LogNormal(m1, s1).to_event(1), D.LogNormal(np.array([0.3, -0.2]), 1.7).to_event(1))

    assert scg.gradcheck(lognormal, [np.array([0.2, -1.0]), np.array([0.8, 2.0])], order=2)


def test_kl_refusals():
    p = D.Normal(np.zeros((2, 3)), 1.0)
    with pytest.raises(NotImplementedError, match="reinterpreting"):
        D.kl_divergence(p.to_event(1), p.to_event(2))
    with pytest.raises(NotImplementedError, match="Monte Carlo"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Cauchy(0.0, 1.0))  # not a closed form


def test_kl_with_python_numbers_stays_float32():
    loc = scg.tensor(np.array([0.5, -1.0], np.float32), requires_grad=True)
    for p, q in ((D.LogNormal(loc, 1.0), D.LogNormal(0.0, 2.0)), (D.Laplace(loc, 1.0), D.Laplace(0.0, 2.0))):
        assert D.kl_divergence(p, q).dtype == np.float32 and D.kl_divergence(q, p).dtype == np.float32

"""mode, cdf, icdf and perplexity, on the families where torch.distributions has them.

References: scipy.stats' cdf / ppf / pdf / pmf / entropy, closed forms written here.
Which family has what follows torch 2.x (checked once by hand: cdf and icdf on the
location-scale families, Exponential, Uniform, HalfNormal, LogNormal; cdf alone on Gamma;
mode everywhere but Multinomial and the relaxed families; perplexity wherever there is an
entropy).
"""

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import scg
import scg.distributions as D
from scg import ops
from families import EPS32, FAMILIES, f32_tol, make

CDF = ["Normal", "Laplace", "Cauchy", "Exponential", "Uniform", "HalfNormal", "LogNormal", "Gamma"]
ICDF = ["Normal", "Laplace", "Cauchy", "Exponential", "Uniform", "HalfNormal", "LogNormal"]
LEVELS = np.array([1e-4, 0.01, 0.3, 0.5, 0.7, 0.99])[:, None]


def params(name, dtype):
    p = {k: np.asarray(v, dtype=dtype) for k, v in FAMILIES[name].grid.items()}
    return p, {k: v.astype(np.float64) for k, v in p.items()}  # (the float32-rounded values, in float64)


def inside_values(name, p64, dtype):
    x = FAMILIES[name].values(p64)
    if name == "Uniform":  # the grid's values may include high, where the cdf is 1
        x = np.minimum(x, p64["high"])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CDF)
def test_cdf_matches_scipy(name, dtype):
    p, p64 = params(name, dtype)
    x = inside_values(name, p64, dtype)
    got = make(name, **p).cdf(x)
    ref = FAMILIES[name].scipy(p64).cdf(x.astype(np.float64))
    assert got.dtype == dtype and got.shape == x.shape
    if dtype == np.float64:
        np.testing.assert_allclose(got.data, ref, rtol=1e-10, atol=1e-300)
    else:
        # the rounding of x and of the parameters inside z moves F by pdf(x) times it
        pdf = FAMILIES[name].scipy(p64).pdf(x.astype(np.float64))
        spread = np.abs(x) + sum(np.abs(v) for v in p64.values())
        assert (np.abs(got.data - ref) <= f32_tol(ref, 4 * pdf * spread)).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ICDF)
def test_icdf_matches_scipy_ppf(name, dtype):
    p, p64 = params(name, dtype)
    q = LEVELS.astype(dtype)
    got = make(name, **p).icdf(q)
    ref = FAMILIES[name].scipy(p64).ppf(q.astype(np.float64))
    assert got.dtype == dtype and got.shape == np.broadcast_shapes(q.shape, got.shape)
    if dtype == np.float64:
        np.testing.assert_allclose(got.data, ref, rtol=1e-9)
    else:
        # dx = dp / pdf(x): a few roundings of p (and of 1 - p) plus those of the result
        pdf = FAMILIES[name].scipy(p64).pdf(ref)
        terms = [ref, 4 * (q + (1 - q)) / pdf] + [4 * np.abs(v) for v in p64.values()]
        assert (np.abs(got.data - ref) <= f32_tol(*terms)).all()


@pytest.mark.parametrize("name", ICDF)
def test_icdf_inverts_cdf(name):
    p, p64 = params(name, np.float64)
    d = make(name, **p)
    x = inside_values(name, p64, np.float64)
    # Where F(x) is within 1e-3 of one, 1 - F keeps only ~eps / (1 - F) of its digits (and
    # rounds to 1 further out): the round trip is checked below that, and at the high of Uniform.
    x = np.where(FAMILIES[name].scipy(p64).cdf(x) < 0.999, x, FAMILIES[name].scipy(p64).ppf(0.5))
    np.testing.assert_allclose(d.icdf(d.cdf(x)).data, x, rtol=1e-8, atol=1e-12 * np.abs(x).max())
    levels = np.broadcast_to(LEVELS, (len(LEVELS),) + d.batch_shape)
    np.testing.assert_allclose(d.cdf(d.icdf(levels)).data, levels, rtol=1e-10)


def test_cdf_in_the_far_lower_tail_keeps_its_digits():
    # 1/2 (1 + erf(z / sqrt 2)) and 1/2 + arctan(z) / pi would both give 0 or a few digits here
    np.testing.assert_allclose(D.Normal(0.0, 1.0).cdf(-30.0).data, st.norm.cdf(-30.0), rtol=1e-12)
    np.testing.assert_allclose(D.Cauchy(0.0, 1.0).cdf(-1e12).data, st.cauchy.cdf(-1e12), rtol=1e-12)
    np.testing.assert_allclose(D.Laplace(0.0, 1.0).cdf(-600.0).data, 0.5 * np.exp(-600.0), rtol=1e-12)
    np.testing.assert_allclose(D.Exponential(1.0).cdf(1e-20).data, 1e-20, rtol=1e-12)
    # sqrt(2) erfinv(p) = p sqrt(pi / 2) (1 + O(p^2)); scipy's halfnorm.ppf says 0 here
    np.testing.assert_allclose(D.HalfNormal(1.0).icdf(1e-20).data, 1e-20 * np.sqrt(np.pi / 2), rtol=1e-12)


GRADCHECK = {
    "Normal": (dict(loc=0.3, scale=1.7), [-1.2, 0.4, 2.5]),
    "Laplace": (dict(loc=0.3, scale=1.7), [-1.2, 0.4, 2.5]),
    "Cauchy": (dict(loc=0.3, scale=1.7), [-1.2, 0.4, 2.5]),
    "Exponential": (dict(rate=1.3), [0.2, 1.0, 3.0]),
    "Uniform": (dict(low=-1.0, high=2.5), [-0.5, 0.4, 2.0]),
    "HalfNormal": (dict(scale=1.7), [0.2, 1.0, 3.0]),
    "LogNormal": (dict(loc=0.3, scale=0.8), [0.2, 1.0, 3.0]),
    "Gamma": (dict(concentration=2.5, rate=1.5), [0.2, 1.0, 3.0]),  # both branches of d log z / da
}


@pytest.mark.parametrize("name", CDF)
def test_cdf_second_order_gradients_in_value_and_parameters(name):
    theta, x = GRADCHECK[name]
    inputs = [scg.tensor(np.full(3, v), requires_grad=True) for v in theta.values()]
    inputs.append(scg.tensor(np.array(x), requires_grad=True))

    def f(*args):
        return make(name, **dict(zip(theta, args[:-1]))).cdf(args[-1])

    assert scg.gradcheck(f, inputs, order=2)


@pytest.mark.parametrize("name", ICDF)
def test_icdf_second_order_gradients_in_value_and_parameters(name):
    theta, _ = GRADCHECK[name]
    inputs = [scg.tensor(np.full(3, v), requires_grad=True) for v in theta.values()]
    inputs.append(scg.tensor(np.array([0.1, 0.45, 0.8]), requires_grad=True))

    def f(*args):
        return make(name, **dict(zip(theta, args[:-1]))).icdf(args[-1])

    assert scg.gradcheck(f, inputs, order=2)


def test_gamma_cdf_gradient_in_concentration_against_a_finite_difference_of_scipy():
    a, x, h = 3.5, np.array([0.5, 2.0, 9.0]), 1e-6  # x = 9: the quadrature branch
    ta = scg.tensor(a, requires_grad=True)
    (g,) = scg.grad(D.Gamma(ta, 1.0).cdf(x).sum(), [ta])
    ref = (sp.gammainc(a + h, x) - sp.gammainc(a - h, x)).sum() / (2 * h)
    np.testing.assert_allclose(g.data, ref, rtol=1e-7)


@pytest.mark.parametrize("op, lo, hi", [(ops.erf, -2.0, 2.0), (ops.erfinv, -0.9, 0.9), (ops.ndtr, -3.0, 3.0),
                                        (ops.ndtri, 0.05, 0.95), (ops.arctan, -3.0, 3.0), (ops.tan, -1.2, 1.2)])
def test_new_primitives_gradcheck_to_second_order_and_keep_float32(op, lo, hi):
    x = scg.tensor(np.linspace(lo, hi, 5), requires_grad=True)
    assert scg.gradcheck(op, [x], order=2)
    assert op(scg.tensor(np.linspace(lo, hi, 5).astype(np.float32))).dtype == np.float32


def test_regularized_gamma_gradcheck_to_second_order_on_both_sides_of_the_branch():
    from scg.distributions.gamma import gammainc as regularized_gamma

    a = scg.tensor(np.array([0.7, 2.0, 6.0]), requires_grad=True)
    x = scg.tensor(np.array([0.3, 3.0, 7.5]), requires_grad=True)
    assert scg.gradcheck(regularized_gamma, [a, x], order=2)


# ---- mode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Normal", "Laplace", "Cauchy", "StudentT", "LogNormal", "Gamma", "Beta"])
def test_interior_mode_is_a_maximum_of_scipy_density(name):
    fam = FAMILIES[name]
    p, p64 = params(name, np.float64)
    if name == "Gamma":  # an interior mode needs a > 1
        keep = p64["concentration"] > 1
        p = p64 = {k: v[keep] for k, v in p64.items()}
    if name == "Beta":
        keep = (p64["concentration1"] > 1) & (p64["concentration0"] > 1)
        p = p64 = {k: v[keep] for k, v in p64.items()}
    m = make(name, **p).mode.data
    ref = fam.scipy(p64)
    h = 1e-4 * (p64["scale"] if name in ("Cauchy", "StudentT") else np.sqrt(np.minimum(ref.var(), 1.0)))
    at = ref.logpdf(m)
    assert np.isfinite(at).all()
    assert (at >= ref.logpdf(m + h)).all() and (at >= ref.logpdf(m - h)).all()


def test_modes_on_the_edge_or_without_one():
    np.testing.assert_array_equal(D.Exponential(np.array([0.5, 3.0])).mode.data, [0.0, 0.0])
    np.testing.assert_array_equal(D.HalfNormal(np.array([0.5, 3.0])).mode.data, [0.0, 0.0])
    np.testing.assert_array_equal(D.Gamma(np.array([0.5, 1.0, 3.0]), 2.0).mode.data, [0.0, 0.0, 1.0])
    assert np.isnan(D.Uniform(0.0, np.array([1.0, 2.0])).mode.data).all()
    np.testing.assert_array_equal(D.Bernoulli(np.array([0.3, 0.5, 0.7, 0.0, 1.0])).mode.data,
                                  [0.0, np.nan, 1.0, 0.0, 1.0])
    # Beta: (a - 1)/(a + b - 2); an exponent below one makes that end unbounded; flat at a = b = 1
    a, b = np.array([2.0, 0.5, 0.5, 1.0, 1.0, 2.0]), np.array([3.0, 0.5, 2.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(D.Beta(a, b).mode.data, [1 / 3, 1.0, 0.0, np.nan, 0.0, 1.0])
    c = np.array([[2.0, 3.0, 4.0], [0.5, 2.0, 3.0], [1.0, 1.0, 1.0], [0.5, 0.2, 0.5]])
    np.testing.assert_allclose(D.Dirichlet(c).mode.data,
                               [[1 / 6, 2 / 6, 3 / 6], [0.0, 1 / 3, 2 / 3], [np.nan] * 3, [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(D.MultivariateNormal(np.array([1.0, 2.0]), scale_tril=np.eye(2)).mode.data, [1, 2])
    ind = D.Independent(D.Normal(np.arange(6.0).reshape(2, 3), 1.0), 1)
    np.testing.assert_array_equal(ind.mode.data, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(D.Normal(np.array([1.0, 2.0]), 1.0).expand((3, 2)).mode.data, [[1, 2]] * 3)


@pytest.mark.parametrize("name, build, pmf, n", [
    ("Poisson", lambda: D.Poisson(np.array([0.3, 2.5, 17.2])), lambda k: st.poisson.pmf(k, [0.3, 2.5, 17.2]), 60),
    ("Binomial", lambda: D.Binomial(np.array([5.0, 9.0, 4.0]), probs=np.array([0.3, 0.95, 0.1])),
     lambda k: st.binom.pmf(k, [5, 9, 4], [0.3, 0.95, 0.1]), 10),
    ("Geometric", lambda: D.Geometric(probs=np.array([0.3, 0.9])), lambda k: st.geom.pmf(k + 1, [0.3, 0.9]), 30),
    ("Categorical", lambda: D.Categorical(probs=np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])),
     lambda k: np.array([[0.2, 0.6], [0.5, 0.1], [0.3, 0.3]])[k.astype(int)[:, 0]], 3),
])
def test_discrete_mode_is_the_argmax_of_the_pmf(name, build, pmf, n):
    k = np.arange(n, dtype=np.float64)[:, None]
    np.testing.assert_array_equal(build().mode.data, np.argmax(pmf(k), axis=0))


def test_one_hot_mode_and_integer_dtype_of_categorical_mode():
    p = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    assert D.Categorical(probs=p).mode.dtype == np.int64
    np.testing.assert_array_equal(D.Categorical(probs=p).mode.data, [1, 0])  # first of ties, as torch
    np.testing.assert_array_equal(D.OneHotCategorical(probs=p).mode.data, [[0, 1, 0], [1, 0, 0]])


def test_mode_of_a_location_family_carries_the_gradient():
    loc = scg.tensor(np.array([0.5, -1.0]), requires_grad=True)
    (g,) = scg.grad(D.Normal(loc, 2.0).mode.sum(), [loc])
    np.testing.assert_array_equal(g.data, [1.0, 1.0])


# ---- perplexity, refusals, validation ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_perplexity_is_exp_entropy(name):
    p, p64 = params(name, np.float64)
    np.testing.assert_allclose(make(name, **p).perplexity().data, np.exp(FAMILIES[name].scipy(p64).entropy()),
                               rtol=1e-9)


def test_perplexity_of_discrete_families():
    np.testing.assert_allclose(D.Categorical(probs=[0.2, 0.3, 0.5]).perplexity().data,
                               np.exp(st.entropy([0.2, 0.3, 0.5])), rtol=1e-12)
    np.testing.assert_allclose(D.Binomial(7, probs=0.3).perplexity().data, np.exp(st.binom.entropy(7, 0.3)), rtol=1e-12)


@pytest.mark.parametrize("call, family, method", [
    (lambda: D.StudentT(3.0).cdf(0.0), "StudentT", "cdf"),
    (lambda: D.Gamma(2.0, 1.0).icdf(0.5), "Gamma", "icdf"),
    (lambda: D.Beta(2.0, 2.0).cdf(0.5), "Beta", "cdf"),
    (lambda: D.Multinomial(3, probs=[0.5, 0.5]).mode, "Multinomial", "mode"),
    (lambda: D.RelaxedBernoulli(0.5, probs=0.3).mode, "RelaxedBernoulli", "mode"),
    (lambda: D.Poisson(2.0).perplexity(), "Poisson", "entropy"),  # as torch: no closed-form entropy
])
def test_methods_a_family_lacks_raise_naming_it(call, family, method):
    with pytest.raises(NotImplementedError, match=f"{family} does not implement {method}"):
        call()


def test_cdf_and_icdf_validate_their_values():
    with pytest.raises(ValueError, match=r"Exponential.cdf: value np.float64\(-1.0\) is outside the support, x >= 0"):
        D.Exponential(1.0).cdf(-1.0)
    with pytest.raises(ValueError, match=r"Normal.icdf: value np.float64\(1.5\) is not a probability in \[0, 1\]"):
        D.Normal(0.0, 1.0).icdf(np.array([0.5, 1.5]))
    lenient = D.Exponential(1.0, validate_args=False)
    np.testing.assert_array_equal(lenient.cdf(np.array([-1.0, 0.0])).data, [0.0, 0.0])
    assert np.isnan(D.Normal(0.0, 1.0, validate_args=False).icdf(1.5).data)
    np.testing.assert_array_equal(D.HalfNormal(1.0, validate_args=False).cdf(-2.0).data, 0.0)
    np.testing.assert_array_equal(D.LogNormal(0.0, 1.0, validate_args=False).cdf(-2.0).data, 0.0)
    np.testing.assert_array_equal(D.Gamma(2.0, 1.0, validate_args=False).cdf(-2.0).data, 0.0)
    u = D.Uniform(0.0, 2.0, validate_args=False)
    np.testing.assert_array_equal(u.cdf(np.array([-1.0, 2.0, 3.0])).data, [0.0, 1.0, 1.0])
    assert D.Uniform(0.0, 2.0).cdf(2.0).data == 1.0  # high: refused by log_prob, not by cdf
    assert D.Normal(0.0, 1.0).icdf(0.0).data == -np.inf and D.Normal(0.0, 1.0).icdf(1.0).data == np.inf


def test_float32_values_give_float32_results_for_python_number_parameters():
    x = np.array([0.5, 1.5], np.float32)
    for d in (D.Normal(0.0, 1.0), D.Gamma(2.0, 1.0), D.LogNormal(0.0, 1.0)):
        assert d.cdf(x).dtype == np.float32
    assert D.Laplace(0.0, 1.0).icdf(np.float32(0.3)).dtype == np.float32
    assert abs(float(D.Normal(0.0, 1.0).cdf(np.float32(0.5)).data) - st.norm.cdf(0.5)) <= 8 * EPS32


# ---- the differences from torch.distributions that README lists -------------------------------


def test_categorical_probs_are_normalised_and_differentiated_as_such():
    d = D.Categorical(probs=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(d.probs.data, [1 / 6, 2 / 6, 3 / 6], rtol=1e-15)
    # d/dp_j log(p_2 / sum p) = [j == 2] / p_2 - 1 / sum p: at p = (0.2, 0.3, 0.5), (-1, -1, 1)
    # (torch's numbers; the unnormalised log p_2 would give (0, 0, 2))
    p = scg.tensor(np.array([0.2, 0.3, 0.5]), requires_grad=True)
    (g,) = scg.grad(D.Categorical(probs=p).log_prob(2), [p])
    np.testing.assert_allclose(g.data, [-1.0, -1.0, 1.0], rtol=1e-12)
    p = scg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (g,) = scg.grad(D.OneHotCategorical(probs=p).log_prob(np.array([0.0, 0.0, 1.0])), [p])
    np.testing.assert_allclose(g.data, [-1 / 6, -1 / 6, 1 / 3 - 1 / 6], rtol=1e-12)
    np.testing.assert_allclose(D.Multinomial(2, probs=[1.0, 3.0]).log_prob([1.0, 1.0]).data, np.log(2 * 0.25 * 0.75))


def test_relaxed_bernoulli_batch_shape_broadcasts_temperature_and_logits():
    # torch says batch_shape (3,) here but draws (2, 3); scg's batch shape is the broadcast one
    d = D.RelaxedBernoulli(np.full((2, 1), 0.5), logits=np.zeros(3))
    assert d.batch_shape == (2, 3) and d.rsample().shape == (2, 3) and d.log_prob(np.full(3, 0.5)).shape == (2, 3)


def test_python_number_parameters_draw_float64():
    # numpy's default float (torch's default is float32): kept, and documented
    assert D.Normal(0.0, 1.0).sample().dtype == np.float64
    assert D.Normal(np.float32(0.0), np.float32(1.0)).sample().dtype == np.float32


def test_transformed_distribution_cdf_and_icdf_through_monotone_transforms():
    x = np.array([0.5, 1.0, 3.0])
    lognormal = D.TransformedDistribution(D.Normal(0.3, 1.2), [D.ExpTransform()])
    ref = st.lognorm(1.2, scale=np.exp(0.3))
    np.testing.assert_allclose(lognormal.cdf(x).data, ref.cdf(x), rtol=1e-13)
    np.testing.assert_allclose(lognormal.icdf(np.array([0.1, 0.5, 0.9])).data, ref.ppf([0.1, 0.5, 0.9]), rtol=1e-13)
    # y = 1 - 3 x with x ~ Exponential(2): decreasing, so F(y) = 1 - F_x((1 - y) / 3)
    flipped = D.TransformedDistribution(D.Exponential(2.0), [D.AffineTransform(1.0, -3.0)])
    y = np.array([-2.0, 0.0, 0.9])
    np.testing.assert_allclose(flipped.cdf(y).data, 1 - st.expon(scale=0.5).cdf((1 - y) / 3), rtol=1e-13)
    p = np.array([0.2, 0.7])
    np.testing.assert_allclose(flipped.icdf(p).data, 1 - 3 * st.expon(scale=0.5).ppf(1 - p), rtol=1e-13)
    # logit-normal: F(y) = Phi((logit y - mu) / sigma)
    logit_normal = D.TransformedDistribution(D.Normal(-0.2, 0.7), [D.SigmoidTransform()])
    u = np.array([0.1, 0.4, 0.95])
    np.testing.assert_allclose(logit_normal.cdf(u).data, st.norm(-0.2, 0.7).cdf(np.log(u / (1 - u))), rtol=1e-12)


def test_transformed_distribution_cdf_gradchecks_and_refuses_what_is_not_monotone():
    def cdf(loc, scale, y):
        return D.TransformedDistribution(D.Normal(loc, scale), [D.ExpTransform(), D.AffineTransform(0.5, 2.0)]).cdf(y)

    assert scg.gradcheck(cdf, [np.array([0.1, -0.3]), np.array([0.8, 1.5]), np.array([1.7, 3.0])], order=2)
    folded = D.TransformedDistribution(D.Normal(0.0, 1.0), [D.AbsTransform()])
    with pytest.raises(NotImplementedError, match="AbsTransform"):
        folded.cdf(1.0)
    with pytest.raises(NotImplementedError, match="scalar events only"):
        D.TransformedDistribution(D.Normal(np.zeros(3), 1.0).to_event(1), [D.SoftmaxTransform()]).icdf(0.5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relaxed_bernoulli_cdf_and_icdf(dtype):
    t, logits = np.array([0.3, 1.0, 2.5], dtype), np.array([-1.0, 0.2, 2.0], dtype)
    d = D.RelaxedBernoulli(t, logits=logits)
    y = np.array([[0.01], [0.3], [0.5], [0.97]], dtype)
    # y = sigmoid((l + g) / T), g ~ Logistic(0, 1): P(Y <= y) = P(g <= T logit(y) - l)
    ref = st.logistic.cdf(t.astype(float) * np.log(y / (1 - y)).astype(float) - logits.astype(float))
    got = d.cdf(y)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.data, ref, rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-7)
    p = np.array([[0.1], [0.5], [0.9]], dtype)
    np.testing.assert_allclose(d.cdf(d.icdf(p)).data, np.broadcast_to(p, (3, 3)), rtol=1e-10 if dtype == np.float64 else 1e-5)
    np.testing.assert_array_equal(d.cdf(np.array([0.0, 1.0])[:, None]).data, [[0.0] * 3, [1.0] * 3])
    if dtype == np.float64:  # a Monte Carlo check of the cdf on the pathwise draws
        draws = d.sample((20000,)).data
        frac = (draws <= 0.3).mean(axis=0)
        np.testing.assert_allclose(frac, d.cdf(0.3).data, atol=4 * 0.5 / np.sqrt(20000))
        assert scg.gradcheck(lambda tt, ll, yy: D.RelaxedBernoulli(tt, logits=ll).cdf(yy),
                             [t, logits, np.array([0.2, 0.5, 0.8])], order=2)


def test_cdf_refusals_name_the_distribution_the_method_and_the_value_given():
    shifted = D.TransformedDistribution(D.Uniform(0.0, 1.0), [D.AffineTransform(2.0, 3.0)])  # support [2, 5)
    with pytest.raises(ValueError, match=r"TransformedDistribution.cdf: value .*7.0.* is outside the support, the image"):
        shifted.cdf(scg.tensor(7.0))
    assert shifted.support.check(np.array([1.0, 3.0, 6.0])).tolist() == [False, True, False]
    lenient = D.TransformedDistribution(D.Uniform(0.0, 1.0), [D.AffineTransform(2.0, 3.0)], validate_args=False)
    got = lenient.cdf(np.array([3.5, 7.0])).data
    assert got[0] == pytest.approx(0.5) and np.isnan(got[1])
    with pytest.raises(ValueError, match=r"Gumbel.cdf: value contains NaN"):
        D.Gumbel(0.0, 1.0).cdf(scg.tensor(np.nan))

"""The transforms torch users expect beyond Exp/Sigmoid/Tanh/Affine: round trips, log|det J|
against a numerical Jacobian (central differences in float64), second-order gradient checks
through the transform and through a TransformedDistribution, caching, equality and refusals.

Conventions checked as torch has them: StickBreaking maps K-1 reals to K simplex entries and its
log|det J| is that of x -> y[..., :-1]; Softmax, Abs and LowerCholesky are not bijective and
have no log|det J|."""

import numpy as np
import pytest
import scipy.stats as st
from families import f32_tol, rng

import scg
import scg.distributions as D

# name -> (transform, a float64 x of one event plus a batch axis of 2)
BIJECTIVE = {
    "Softplus": (lambda: D.SoftplusTransform(), (2, 3)),
    "Power": (lambda: D.PowerTransform(2.5), (2, 3)),
    "PowerNegative": (lambda: D.PowerTransform(-0.7), (2, 3)),
    "StickBreaking": (lambda: D.StickBreakingTransform(), (2, 4)),
    "Reshape": (lambda: D.ReshapeTransform((2, 3), (3, 2)), (2, 2, 3)),
    "Cat": (lambda: D.CatTransform([D.ExpTransform(), D.AffineTransform(1.0, -3.0), D.SoftplusTransform()],
                                   dim=-1, lengths=[1, 2, 1]), (2, 4)),
    "CatOfEvents": (lambda: D.CatTransform([D.IndependentTransform(D.SigmoidTransform(), 1), D.IndependentTransform(D.TanhTransform(), 1)],
                                           dim=0, lengths=[1, 1]), (2, 3)),
    "Stack": (lambda: D.StackTransform([D.SigmoidTransform(), D.AffineTransform(0.5, 2.0), D.SoftplusTransform()], dim=-1),
              (2, 3)),
    "Independent": (lambda: D.IndependentTransform(D.SoftplusTransform(), 2), (2, 2, 3)),
    "Compose": (lambda: D.ComposeTransform([D.ReshapeTransform((6,), (2, 3)), D.StickBreakingTransform()]), (2, 6)),
}
NOT_BIJECTIVE = {
    "Abs": (lambda: D.AbsTransform(), (2, 3)),
    "Softmax": (lambda: D.SoftmaxTransform(), (2, 4)),
    "LowerCholesky": (lambda: D.LowerCholeskyTransform(), (2, 3, 3)),
}
POSITIVE_DOMAIN = {"Power", "PowerNegative"}


def draw_x(name, shape, seed=0):
    x = rng(seed).normal(size=shape)
    if name in POSITIVE_DOMAIN:
        x = np.abs(x) + 0.3
    return x


def numerical_log_abs_det(t, x_event, drop_last=False):
    """log |det dy/dx| for one event x (any shape), by central differences on the flattened
    x and y; ``drop_last``: the Jacobian of y[..., :-1] (StickBreaking's K-1 free coordinates)."""
    def f(v):
        y = t(v.reshape(x_event.shape)).data
        return (y[..., :-1] if drop_last else y).ravel()

    flat, h = x_event.ravel(), 1e-6
    cols = []
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = h
        cols.append((f(flat + e) - f(flat - e)) / (2 * h))
    return np.linalg.slogdet(np.stack(cols, axis=1))[1]


@pytest.mark.parametrize("name", sorted(BIJECTIVE))
def test_bijective_round_trip_and_log_abs_det_jacobian(name):
    make, shape = BIJECTIVE[name]
    t = make()
    assert t.bijective
    x = draw_x(name, shape)
    y = t(x)
    assert y.shape == t.forward_shape(x.shape) and t.inverse_shape(y.shape) == x.shape
    np.testing.assert_allclose(t.inv(y).data, x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t.inv(t.inv.inv(x)).data, x, rtol=1e-10, atol=1e-12)  # inv.inv is t
    ladj = t.log_abs_det_jacobian(scg.tensor(x), y).data
    batch = x.shape[: x.ndim - t.domain_event_dim]
    # one batch element holds the whole event unless the log|J| still has axes beyond the batch
    per_event = ladj.reshape(batch[:1] + (-1,)).sum(-1)
    drop = isinstance(t, D.StickBreakingTransform) or name == "Compose"
    for b in range(x.shape[0]):
        expected = numerical_log_abs_det(t, x[b], drop_last=drop) if name != "CatOfEvents" else None
        if name == "CatOfEvents":  # the two slices are separate events: their log|J|s side by side
            parts = [numerical_log_abs_det(D.SigmoidTransform(), x[0]),
                     numerical_log_abs_det(D.TanhTransform(), x[1])]
            np.testing.assert_allclose(ladj, parts, rtol=1e-7)
            break
        np.testing.assert_allclose(per_event[b], expected, rtol=1e-7, atol=1e-8)


def test_stick_breaking_conventions():
    t = D.StickBreakingTransform()
    assert (t.domain_event_dim, t.codomain_event_dim, t.event_dim) == (1, 1, 1)
    y = t(np.zeros(3)).data  # x = 0 is the centre of the simplex
    np.testing.assert_allclose(y, np.full(4, 0.25), rtol=1e-15)
    y = t(rng(1).normal(size=(5, 3)) * 5).data
    assert y.shape == (5, 4) and np.all(y > 0)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-14)
    # far out the stick is spent on the first piece without the rest underflowing to NaN
    y = t(np.array([40.0, 0.0, -40.0])).data
    assert np.all(np.isfinite(y)) and y[0] == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(NOT_BIJECTIVE))
def test_not_bijective_inverse_is_a_right_inverse_and_there_is_no_jacobian(name):
    make, shape = NOT_BIJECTIVE[name]
    t = make()
    assert not t.bijective
    y = t(draw_x(name, shape))
    np.testing.assert_allclose(t(t.inv(y)).data, y.data, rtol=1e-12, atol=1e-15)
    with pytest.raises(NotImplementedError, match="log_abs_det_jacobian"):
        t.log_abs_det_jacobian(t.inv(y), y)
    with pytest.raises(NotImplementedError, match="no sign"):
        t.sign
    base = D.Normal(np.zeros(shape[1:]), 1.0)
    with pytest.raises(NotImplementedError, match="log_abs_det_jacobian"):
        D.TransformedDistribution(base, [t]).log_prob(y.data[0])


def test_softmax_and_lower_cholesky_values():
    x = rng(2).normal(size=(2, 4))
    np.testing.assert_allclose(D.SoftmaxTransform()(x).data, np.exp(x) / np.exp(x).sum(-1, keepdims=True), rtol=1e-14)
    m = rng(3).normal(size=(3, 3)) * 50  # an upper entry whose exp would overflow is dropped, not used
    y = D.LowerCholeskyTransform()(m).data
    np.testing.assert_array_equal(np.triu(y, 1), 0)
    np.testing.assert_allclose(np.diag(y), np.exp(np.diag(m)), rtol=1e-14)
    np.testing.assert_array_equal(np.tril(y, -1), np.tril(m, -1))
    np.testing.assert_array_equal(D.AbsTransform()(np.array([-2.0, 3.0])).data, [2.0, 3.0])


def test_sign_and_event_dims():
    assert D.SoftplusTransform().sign == 1 and D.PowerTransform(2.0).sign == 1 and D.PowerTransform(-1.0).sign == -1
    assert D.IndependentTransform(D.PowerTransform(-2.0), 1).sign == -1
    assert D.ComposeTransform([D.PowerTransform(-2.0), D.AffineTransform(0.0, -1.0)]).sign == 1
    r = D.ReshapeTransform((6,), (2, 3))
    assert (r.domain_event_dim, r.codomain_event_dim) == (1, 2)
    with pytest.raises(ValueError, match="use domain_event_dim or codomain_event_dim"):
        r.event_dim
    assert (r.inv.domain_event_dim, r.inv.codomain_event_dim) == (2, 1)
    assert D.IndependentTransform(D.StickBreakingTransform(), 2).event_dim == 3
    assert D.LowerCholeskyTransform().event_dim == 2
    assert D.CatTransform([D.ExpTransform(), D.IndependentTransform(D.ExpTransform(), 1)]).event_dim == 1


# ---- second-order gradients ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BIJECTIVE) + sorted(NOT_BIJECTIVE))
def test_gradcheck_through_call(name):
    make, shape = {**BIJECTIVE, **NOT_BIJECTIVE}[name]
    t = make()
    x = draw_x(name, shape, seed=4)
    if name == "Abs":
        x = x + np.sign(x) * 0.1  # away from the kink

    assert scg.gradcheck(lambda v: t(v), [x], order=2)


def test_gradcheck_in_the_power_exponent():
    assert scg.gradcheck(lambda x, e: D.PowerTransform(e)(x), [np.array([0.5, 1.7]), np.array([1.3, -0.6])], order=2)
    assert scg.gradcheck(lambda x, e: D.PowerTransform(e).log_abs_det_jacobian(x, None),
                         [np.array([0.5, 1.7]), np.array([1.3, -0.6])], order=2)


@pytest.mark.parametrize("name", sorted(BIJECTIVE))
def test_gradcheck_through_transformed_log_prob(name):
    make, shape = BIJECTIVE[name]
    t = make()
    x = draw_x(name, shape, seed=5)
    y = t(x).data
    base_shape = x.shape

    def log_prob(loc, log_scale, value):
        base = D.Normal(loc, scg.exp(log_scale)) if name not in POSITIVE_DOMAIN else D.Gamma(scg.exp(log_scale), scg.exp(loc))
        return D.TransformedDistribution(base, [t], validate_args=False).log_prob(value)

    loc = rng(6).normal(size=base_shape) * 0.3
    log_scale = rng(7).normal(size=base_shape) * 0.2
    if name in ("StickBreaking", "Compose"):  # a step in y leaves the simplex: the value stays put
        assert scg.gradcheck(lambda a, b: log_prob(a, b, y), [loc, log_scale], order=2)
    else:
        assert scg.gradcheck(log_prob, [loc, log_scale, y], order=2)


# ---- TransformedDistribution with them: closed forms --------------------------------------------


def test_transformed_log_prob_against_closed_forms():
    y = np.array([0.3, 1.1, 2.5])
    # Softplus of a standard normal: p(y) = phi(x) / sigmoid(x), x = log(e^y - 1)
    x = np.log(np.expm1(y))
    d = D.TransformedDistribution(D.Normal(0.0, np.ones(3)), D.SoftplusTransform())
    np.testing.assert_allclose(d.log_prob(y).data, st.norm.logpdf(x) + np.log1p(np.exp(-x)), rtol=1e-12)
    # x^(1/2) of an Exponential(1) is a Weibull with shape 2
    d = D.TransformedDistribution(D.Exponential(np.ones(3)), D.PowerTransform(0.5))
    np.testing.assert_allclose(d.log_prob(y).data, st.weibull_min(2).logpdf(y), rtol=1e-12)
    # a reshaped Normal: the same numbers, laid out as (2, 3)
    loc = np.arange(6.0) / 4
    d = D.TransformedDistribution(D.Normal(loc, 1.5), D.ReshapeTransform((6,), (2, 3)))
    assert d.batch_shape == () and d.event_shape == (2, 3)
    v = rng(8).normal(size=(4, 2, 3))
    np.testing.assert_allclose(d.log_prob(v).data, st.norm(loc, 1.5).logpdf(v.reshape(4, 6)).sum(-1), rtol=1e-12)


def test_transformed_shapes_follow_the_transforms():
    base = D.Normal(np.zeros((5, 3)), 1.0)
    d = D.TransformedDistribution(base, D.StickBreakingTransform())
    assert d.batch_shape == (5,) and d.event_shape == (4,)
    assert d.sample((2,), rng=rng()).shape == (2, 5, 4)
    lp = d.log_prob(d.sample((2,), rng=rng()))
    assert lp.shape == (2, 5) and np.all(np.isfinite(lp.data))
    # a transform's parameters add batch axes: the base is expanded, as torch does
    d = D.TransformedDistribution(D.Normal(0.0, np.ones(3)), D.AffineTransform(np.zeros((2, 3)), 2.0))
    assert d.batch_shape == (2, 3)
    np.testing.assert_allclose(d.log_prob(np.ones((2, 3))).data, st.norm(0, 2).logpdf(1.0), rtol=1e-12)
    with pytest.raises(ValueError, match="needs 2 event axes"):
        D.TransformedDistribution(D.Normal(0.0, np.ones(3)), D.LowerCholeskyTransform())


@pytest.mark.parametrize("validate", [False, True])
def test_values_outside_the_codomain(validate):
    stick = D.TransformedDistribution(D.Normal(np.zeros(2), 1.0), D.StickBreakingTransform(), validate_args=validate)
    soft = D.TransformedDistribution(D.Normal(np.zeros(2), 1.0), D.SoftplusTransform(), validate_args=validate)
    bad_stick = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.6]])  # the second does not sum to one
    bad_soft = np.array([0.5, -0.5])
    if validate:
        with pytest.raises(ValueError, match="outside the support"):
            stick.log_prob(bad_stick)
        with pytest.raises(ValueError, match="outside the support"):
            soft.log_prob(bad_soft)
    else:
        lp = stick.log_prob(bad_stick).data
        assert np.isfinite(lp[0]) and lp[1] == -np.inf
        lp = soft.log_prob(bad_soft).data
        assert np.isfinite(lp[0]) and lp[1] == -np.inf
    # inside, both settings agree
    np.testing.assert_allclose(stick.log_prob(bad_stick[:1]).data,
                               D.TransformedDistribution(D.Normal(np.zeros(2), 1.0), D.StickBreakingTransform(),
                                                         validate_args=not validate).log_prob(bad_stick[:1]).data)


def test_float32_stays_float32():
    x = rng(9).normal(size=(3, 4))
    for t in (D.SoftplusTransform(), D.StickBreakingTransform(), D.PowerTransform(2.0), D.SoftmaxTransform()):
        v = np.abs(x) if isinstance(t, D.PowerTransform) else x
        y32, y64 = t(v.astype(np.float32)), t(v)
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32.data, y64.data, rtol=0, atol=f32_tol(y64.data).max())
        if t.bijective:
            l32, l64 = t.log_abs_det_jacobian(scg.tensor(v.astype(np.float32)), y32), t.log_abs_det_jacobian(scg.tensor(v), y64)
            assert l32.dtype == np.float32
            np.testing.assert_allclose(l32.data, l64.data, rtol=0, atol=f32_tol(l64.data, v.sum()).max())


# ---- caching, equality, refusals --------------------------------------------------------------


def test_cache_size_one_returns_the_remembered_pair():
    x = scg.tensor(np.array([40.0, 1.0, -3.0]))
    cached = D.SoftplusTransform(cache_size=1)
    y = cached(x)
    assert cached.inv(y) is x and cached(x) is y
    plain = D.SoftplusTransform()
    assert plain.inv(plain(x)) is not x
    stick = D.StickBreakingTransform().with_cache()
    assert stick.cache_size == 1 and stick.inv(stick(x)) is x
    composed = D.ComposeTransform([D.ExpTransform(), D.PowerTransform(2.0)], cache_size=1)
    assert composed.inv(composed(x)) is x
    # the inverse shares the cache: x -> y through inv is remembered too
    z = cached.inv(y * 1.0)
    assert cached(z) is not None and cached.inv.inv is cached
    for make in (lambda: D.AbsTransform(cache_size=2), lambda: D.ReshapeTransform((2,), (2,), cache_size=True)):
        with pytest.raises(ValueError, match="'cache_size' must be 0 or 1"):
            make()


def test_a_draw_through_a_cached_transform_has_its_exact_base_value_back():
    base = D.Normal(np.zeros(3), 1.0)
    t = D.SoftplusTransform(cache_size=1)
    d = D.TransformedDistribution(base, t)
    y = d.rsample(rng=rng())
    assert y is t._cached[1]
    np.testing.assert_array_equal(t.inv(y).data, t._cached[0].data)


def test_equality_as_torch():
    assert D.SoftplusTransform() == D.SoftplusTransform() and D.SoftmaxTransform() == D.SoftmaxTransform()
    assert D.PowerTransform(2.0) == D.PowerTransform(2.0) and D.PowerTransform(2.0) != D.PowerTransform(3.0)
    assert D.AffineTransform(0.0, 2.0) == D.AffineTransform(np.zeros(2), 2.0)
    assert D.ExpTransform().inv == D.ExpTransform().inv and D.ExpTransform() != D.ExpTransform().inv
    r = D.ReshapeTransform((2,), (2, 1))
    assert r == r and r != D.ReshapeTransform((2,), (2, 1))  # torch compares these by identity


def test_refusals_name_the_parameter():
    with pytest.raises(ValueError, match="PowerTransform: parameter 'exponent' must be finite and nonzero"):
        D.PowerTransform(0.0)
    with pytest.raises(ValueError, match="ReshapeTransform: parameters 'in_shape'"):
        D.ReshapeTransform((2, 3), (5,))
    with pytest.raises(ValueError, match="CatTransform: parameter 'lengths'"):
        D.CatTransform([D.ExpTransform()], lengths=[1, 2])
    with pytest.raises(ValueError, match="StackTransform: parameter 'tseq' holds"):
        D.StackTransform([D.StickBreakingTransform()])
    with pytest.raises(ValueError, match="IndependentTransform: parameter 'reinterpreted_batch_ndims'"):
        D.IndependentTransform(D.ExpTransform(), -1)
    with pytest.raises(ValueError, match="must have length 2"):
        D.StackTransform([D.ExpTransform(), D.ExpTransform()])(np.zeros(3))

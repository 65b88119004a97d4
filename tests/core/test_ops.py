"""Every primitive and composite: values against numpy/scipy, and first- and
second-order gradients against finite differences in float64 (scg.gradcheck), over
broadcasting shapes generated with hypothesis."""

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import scg
import scg.distributions as D
from scg import ops

SMALL = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


def draw(data, shape, lo, hi, away_from=None):
    """Uniform values in [lo, hi], kept at least 0.1 from ``away_from`` (a kink)."""
    seed = data.draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).uniform(lo, hi, shape)
    if away_from is not None:
        near = np.abs(x - away_from) < 0.1
        x = np.where(near, away_from + 0.1 * np.sign(x - away_from + 1e-12) + 0.05, x)
    return x


UNARY = [
    ("exp", scg.exp, np.exp, (-2, 2), None),
    ("log", scg.log, np.log, (0.3, 3), None),
    ("log1p", scg.log1p, np.log1p, (-0.5, 2), None),
    ("expm1", scg.expm1, np.expm1, (-2, 2), None),
    ("sqrt", scg.sqrt, np.sqrt, (0.3, 3), None),
    ("tanh", scg.tanh, np.tanh, (-2, 2), None),
    ("arctan", ops.arctan, np.arctan, (-3, 3), None),
    ("tan", ops.tan, np.tan, (-1.2, 1.2), None),
    ("sigmoid", scg.sigmoid, sp.expit, (-4, 4), None),
    ("softplus", scg.softplus, lambda x: np.log1p(np.exp(x)), (-4, 4), None),
    ("relu", scg.relu, lambda x: np.maximum(x, 0), (-2, 2), 0.0),
    ("abs", scg.abs, np.abs, (-2, 2), 0.0),
    ("negative", lambda x: -x, np.negative, (-2, 2), None),
    ("lgamma", scg.lgamma, sp.gammaln, (0.3, 5), None),
    ("digamma", scg.digamma, sp.digamma, (0.3, 5), None),
    ("polygamma1", lambda x: scg.polygamma(1, x), lambda x: sp.polygamma(1, x), (0.5, 5), None),
]


@pytest.mark.parametrize("name, fn, ref, domain, kink", UNARY, ids=[u[0] for u in UNARY])
@given(data=st.data(), shape=SMALL)
def test_unary(name, fn, ref, domain, kink, data, shape):
    x = draw(data, shape, *domain, away_from=kink)
    np.testing.assert_allclose(fn(scg.tensor(x)).data, ref(x), rtol=1e-12, atol=1e-12)
    assert scg.gradcheck(fn, [x], order=2)


BINARY = [
    ("add", lambda a, b: a + b, np.add, (-2, 2), (-2, 2)),
    ("subtract", lambda a, b: a - b, np.subtract, (-2, 2), (-2, 2)),
    ("multiply", lambda a, b: a * b, np.multiply, (-2, 2), (-2, 2)),
    ("divide", lambda a, b: a / b, np.divide, (-2, 2), (0.5, 2)),
    ("power", lambda a, b: a**b, np.power, (0.5, 2), (-1.5, 1.5)),
    ("maximum", scg.maximum, np.maximum, (-2, 2), (-2, 2)),
    ("minimum", scg.minimum, np.minimum, (-2, 2), (-2, 2)),
    ("xlogy", scg.xlogy, sp.xlogy, (-2, 2), (0.5, 2)),
]


@pytest.mark.parametrize("name, fn, ref, da, db", BINARY, ids=[b[0] for b in BINARY])
@given(data=st.data(), shapes=PAIRS)
def test_binary_broadcasting(name, fn, ref, da, db, data, shapes):
    sa, sb = shapes.input_shapes
    a, b = draw(data, sa, *da), draw(data, sb, *db)
    if name in ("maximum", "minimum"):  # keep the two arguments apart: no ties, no kinks
        b = np.where(np.abs(a - b) < 0.1, b + 0.3, b)
        if np.any(np.abs(np.broadcast_arrays(a, b)[0] - np.broadcast_arrays(a, b)[1]) < 0.1):
            return
    out = fn(scg.tensor(a), scg.tensor(b))
    assert out.shape == np.broadcast_shapes(sa, sb)
    np.testing.assert_allclose(out.data, ref(a, b), rtol=1e-12, atol=1e-12)
    assert scg.gradcheck(fn, [a, b], order=2)


def test_power_with_a_zero_base_has_finite_exponent_gradient():
    a = scg.tensor([0.0, 2.0], requires_grad=True)
    y = scg.tensor([2.0, 3.0], requires_grad=True)
    ga, gy = scg.grad((a**y).sum(), [a, y])
    np.testing.assert_allclose(ga.data, [0.0, 12.0])
    np.testing.assert_allclose(gy.data, [0.0, 8 * np.log(2.0)])


REDUCTIONS = [
    ("sum", scg.sum, np.sum),
    ("mean", scg.mean, np.mean),
    ("max", scg.max, np.max),
    ("min", scg.min, np.min),
    ("logsumexp", scg.logsumexp, sp.logsumexp),
]


@pytest.mark.parametrize("name, fn, ref", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
       keepdims=st.booleans())
def test_reductions(name, fn, ref, data, shape, keepdims):
    # Distinct values (a permutation, spread out) so that max/min have no ties.
    seed = data.draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) * 0.37 - 1.0
    axis = data.draw(st.sampled_from([None, 0, -1] + ([(0, 1)] if len(shape) > 1 else [])))
    out = fn(scg.tensor(x), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, ref(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    assert scg.gradcheck(lambda t: fn(t, axis=axis, keepdims=keepdims), [x], order=2)


def test_max_ties_share_the_gradient():
    x = scg.tensor([1.0, 3.0, 3.0], requires_grad=True)
    (g,) = scg.grad(scg.max(x), [x])
    np.testing.assert_allclose(g.data, [0.0, 0.5, 0.5])


@pytest.mark.parametrize("fn, ref", [(scg.softmax, sp.softmax), (scg.log_softmax, sp.log_softmax)])
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_softmax_family(fn, ref, data, shape):
    x = draw(data, shape, -3, 3)
    np.testing.assert_allclose(fn(scg.tensor(x), axis=-1).data, ref(x, axis=-1), rtol=1e-12, atol=1e-14)
    assert scg.gradcheck(lambda t: fn(t, axis=-1), [x], order=2)


def test_stable_at_extreme_inputs():
    big = np.array([-1000.0, 0.0, 1000.0])
    assert np.isclose(scg.logsumexp(scg.tensor(big)).item(), 1000.0)
    np.testing.assert_allclose(scg.log_softmax(scg.tensor(big)).data, [-2000.0, -1000.0, 0.0])
    np.testing.assert_allclose(scg.softplus(scg.tensor(big)).data, [0.0, np.log(2), 1000.0])
    np.testing.assert_allclose(scg.sigmoid(scg.tensor(big)).data, [0.0, 0.5, 1.0])
    x = scg.tensor(big, requires_grad=True)
    (g,) = scg.grad(scg.logsumexp(x), [x])
    np.testing.assert_allclose(g.data, [0.0, 0.0, 1.0])
    row = scg.logsumexp(scg.tensor(np.array([[-np.inf, -np.inf], [0.0, -np.inf]])), axis=1)
    assert row.data[0] == -np.inf and row.data[1] == 0.0


SHAPE_OPS = [
    ("reshape", lambda t: t.reshape(-1), lambda x: x.reshape(-1)),
    ("transpose", lambda t: t.T, lambda x: x.T),
    ("transpose_axes", lambda t: t.transpose(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    ("swapaxes", lambda t: scg.swapaxes(t, 0, 2), lambda x: np.swapaxes(x, 0, 2)),
    ("basic_index", lambda t: t[1:, ..., ::2], lambda x: x[1:, ..., ::2]),
    ("int_index", lambda t: t[0, -1], lambda x: x[0, -1]),
    ("newaxis", lambda t: t[:, None], lambda x: x[:, None]),
    ("array_index", lambda t: t[[0, 1, 1, 0]], lambda x: x[[0, 1, 1, 0]]),
    ("mixed_index", lambda t: t[[1, 0, 1], :, [2, 2, 0]], lambda x: x[[1, 0, 1], :, [2, 2, 0]]),
    ("bool_index", lambda t: t[np.array([True, False])], lambda x: x[np.array([True, False])]),
    ("expand_dims", lambda t: scg.expand_dims(t, 1), lambda x: np.expand_dims(x, 1)),
    ("broadcast_to", lambda t: scg.broadcast_to(t[:, :1], (2, 4, 3)),
     lambda x: np.broadcast_to(x[:, :1], (2, 4, 3))),
    ("where", lambda t: scg.where(t.data > 0, t, t * t), lambda x: np.where(x > 0, x, x * x)),
    ("clip", lambda t: scg.clip(t, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5)),
]


@pytest.mark.parametrize("name, fn, ref", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_ops(name, fn, ref, rng):
    x = rng.uniform(-2, 2, (2, 3, 3))
    x = np.where(np.abs(np.abs(x) - 0.5) < 0.1, x * 1.5, x)  # away from clip's kinks
    x = np.where(np.abs(x) < 0.1, 0.3, x)
    out = fn(scg.tensor(x))
    np.testing.assert_array_equal(out.data, ref(x))
    assert scg.gradcheck(fn, [x], order=2)


def test_squeeze_and_its_error():
    x = scg.tensor(np.ones((2, 1, 3)))
    assert scg.squeeze(x, 1).shape == (2, 3)
    with pytest.raises(ValueError, match="axis 0 has length 2"):
        scg.squeeze(x, 0)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack(axis, rng):
    a, b, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    np.testing.assert_array_equal(scg.concatenate([scg.tensor(a), b, c], axis=axis).data,
                                  np.concatenate([a, b, c], axis=axis))
    np.testing.assert_array_equal(scg.stack([scg.tensor(a), b, c], axis=axis).data, np.stack([a, b, c], axis=axis))
    assert scg.gradcheck(lambda x, y: scg.concatenate([x, y * y, x], axis=axis), [a, b], order=2)
    assert scg.gradcheck(lambda x, y: scg.stack([x * y, y], axis=axis), [a, b], order=2)


@pytest.mark.parametrize(
    "sa, sb",
    [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)),
     ((2, 3, 4), (4,))],
)
def test_matmul(sa, sb, rng):
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    np.testing.assert_allclose(scg.matmul(scg.tensor(a), b).data, a @ b, rtol=1e-12)
    np.testing.assert_allclose((scg.tensor(a) @ b).data, a @ b, rtol=1e-12)
    assert scg.gradcheck(lambda x, y: x @ y, [a, b], order=2)


def test_astype_round_trip_gradient():
    x = scg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x.astype(np.float32) * 3.0).sum()
    assert y.dtype == np.float32
    (g,) = scg.grad(y, [x])
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g.data, [3.0, 3.0])


# ---- the special points of xlogy, x ** 0 and logsumexp


def test_xlogy_gradient_in_x_is_log_y_also_where_x_is_zero():
    x = scg.tensor([0.0, 0.0, 2.0], requires_grad=True)
    y = scg.tensor([0.5, 2.0, 3.0], requires_grad=True)
    assert scg.xlogy(0.0, 0.0).item() == 0.0  # the one special value: 0 log 0 = 0
    gx, gy = scg.grad(scg.xlogy(x, y).sum(), [x, y], create_graph=True)
    np.testing.assert_allclose(gx.data, [np.log(0.5), np.log(2.0), np.log(3.0)])  # log y
    np.testing.assert_allclose(gy.data, [0.0, 0.0, 2.0 / 3.0])  # x / y
    # d2/dy dx = 1 / y from either side; d2/dx2 = 0
    gxy, gxx = scg.grad(gx.sum(), [y, x], retain_graph=True)
    np.testing.assert_allclose(gxy.data, [2.0, 0.5, 1.0 / 3.0])
    np.testing.assert_allclose(gxx.data, [0.0, 0.0, 0.0])
    (gyx,) = scg.grad(gy.sum(), [x])
    np.testing.assert_allclose(gyx.data, [2.0, 0.5, 1.0 / 3.0])
    assert scg.gradcheck(scg.xlogy, [np.array([0.0, 0.0]), np.array([0.5, 2.0])], order=2)


def test_log_prob_gradient_at_concentration_one():
    # Gamma(a, r): d/da [a log r + (a - 1) log x - lgamma(a) - r x] = log r + log x - digamma(a),
    # and digamma(1) = -euler_gamma.
    a = scg.tensor(1.0, requires_grad=True)
    D.Gamma(a, 2.0).log_prob(0.3).backward()
    assert np.isclose(a.grad.item(), np.log(2.0) + np.log(0.3) + np.euler_gamma)
    # Beta(a, b) at (1, 2): d/da = log x - digamma(a) + digamma(a + b) = log x + 1 + 1/2,
    # d/db = log(1 - x) - digamma(b) + digamma(a + b) = log(1 - x) + 1/2 (digamma(n + 1) = digamma(n) + 1/n).
    a, b = scg.tensor(1.0, requires_grad=True), scg.tensor(2.0, requires_grad=True)
    D.Beta(a, b).log_prob(0.3).backward()
    assert np.isclose(a.grad.item(), np.log(0.3) + 1.5) and np.isclose(b.grad.item(), np.log(0.7) + 0.5)
    # Dirichlet([1, 2]) at (0.3, 0.7) is that Beta.
    c = scg.tensor([1.0, 2.0], requires_grad=True)
    D.Dirichlet(c).log_prob(np.array([0.3, 0.7])).backward()
    np.testing.assert_allclose(c.grad.data, [np.log(0.3) + 1.5, np.log(0.7) + 0.5])


def test_zero_power_of_zero_has_zero_gradient_of_every_order():
    x = scg.tensor([0.0, 2.0], requires_grad=True)
    y = x**0
    np.testing.assert_array_equal(y.data, [1.0, 1.0])
    (g,) = scg.grad(y.sum(), [x], create_graph=True)
    np.testing.assert_array_equal(g.data, [0.0, 0.0])  # x^0 = 1 does not depend on x
    (h,) = scg.grad(g.sum(), [x])
    np.testing.assert_array_equal(h.data, [0.0, 0.0])
    # A Tensor exponent: d/de x^e = x^e log x, taken as 0 at x = 0 (as torch); log 2 at x = 2.
    e = scg.tensor(0.0, requires_grad=True)
    gx, ge = scg.grad((x**e).sum(), [x, e])
    np.testing.assert_array_equal(gx.data, [0.0, 0.0])
    assert np.isclose(ge.item(), np.log(2.0))


def test_logsumexp_of_only_minus_inf_is_minus_inf_with_zero_gradient():
    x = scg.tensor([[-np.inf, -np.inf], [0.0, np.log(3.0)]], requires_grad=True)
    out = scg.logsumexp(x, axis=-1)
    np.testing.assert_allclose(out.data, [-np.inf, np.log(4.0)])
    (g,) = scg.grad(out.sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.data, [[0.0, 0.0], [0.25, 0.75]])  # softmax, 0 on the empty row
    # The Hessian is diag(p) - p p^T: its first column is (p0 (1 - p0), -p0 p1) = (3/16, -3/16).
    (h,) = scg.grad(g[:, 0].sum(), [x])
    np.testing.assert_allclose(h.data, [[0.0, 0.0], [3.0 / 16, -3.0 / 16]])
    z = scg.tensor([-np.inf, -np.inf, -np.inf], requires_grad=True)
    out = scg.logsumexp(z)
    assert out.item() == -np.inf
    (g,) = scg.grad(out, [z])
    np.testing.assert_array_equal(g.data, [0.0, 0.0, 0.0])


# ---- accuracy of the primitives computed by a faster formula than the obvious numpy call ----


def _grid(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-100, 100, 200_001), rng.standard_normal(20_000) * 5,
                        [0.0, 1e-30, -1e-30, 17.0, -17.0, 40.0, -40.0]])
    return x.astype(dtype)


def _ulps(value, ref, dtype):
    ulp = np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    tiny = np.finfo(dtype).tiny  # below it ulps mean nothing (subnormals): compare absolutely
    err = np.abs(value.astype(np.longdouble) - ref)
    return np.where(np.abs(ref) < tiny, err / tiny, err / ulp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_within_4_ulps(dtype):
    x = _grid(dtype)
    ref = np.logaddexp(np.longdouble(0), x.astype(np.longdouble))
    out = scg.softplus(scg.Tensor(x)).data
    assert out.dtype == dtype
    assert np.max(_ulps(out, ref, dtype)) <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_within_4_ulps_and_exact_at_zero(dtype):
    e = np.concatenate([np.linspace(0, 1, 100_001), np.geomspace(1e-30, 1, 10_000)]).astype(dtype)
    ref = np.log1p(e.astype(np.longdouble))
    out = ops._log1p_unit(e.copy())
    assert np.max(_ulps(out, ref, dtype)) <= 4
    first = 100_001  # e = 1e-30: log1p(e) = e exactly in either precision
    assert out[0] == 0 and out[first] == e[first]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_within_4_ulps_of_the_reference_and_saturates_without_warnings(dtype):
    x = _grid(dtype)
    ref = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    with np.errstate(all="raise"):
        out = scg.sigmoid(scg.Tensor(x)).data
    assert out.dtype == dtype
    # 3 with numpy's exp; float32 through scg/_kernels.c calls glibc's vector expf (3.3 measured)
    assert np.max(_ulps(out, ref, dtype)) <= (4 if dtype == np.float32 else 3)
    assert out[0] >= 0 and out[200_000] == 1  # x = -100 and x = 100
    np.testing.assert_allclose(out, sp.expit(x), rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("zero_first", [False, True])
def test_where_with_a_zero_branch_equals_numpy_where_also_with_inf_and_nan(dtype, zero_first):
    """_where multiplies by the mask when one branch is 0 (np.where is slow); the result must
    be np.where's, also where the other branch holds inf or NaN (inf * 0 would be NaN) and
    when that branch broadcasts against the condition."""
    rng = np.random.default_rng(0)
    cond = rng.random((64, 50)) < 0.5
    for a in (rng.standard_normal((64, 50)), rng.standard_normal((1, 50))):
        for poison in (False, True):
            a = a.astype(dtype)
            if poison:
                a = a.copy()
                a.flat[::7] = np.inf
                a.flat[3] = np.nan
            x, y = (0.0, a) if zero_first else (a, 0.0)
            got = scg.where(cond, 0.0, scg.Tensor(a)) if zero_first else scg.where(cond, scg.Tensor(a), 0.0)
            got = got.data
            want = np.where(cond, x, y)
            assert got.dtype == dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)

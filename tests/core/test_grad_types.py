"""The type contract of gradients, on every backward path: the gradient of a leaf is a
Tensor whose ``.data`` is an ``np.ndarray`` (never a numpy scalar, also for 0-d leaves) of
the leaf's shape and dtype, through every primitive, with ``backward`` (retaining the graph
or not) and ``scg.grad`` (with and without ``create_graph``).

Each primitive is used twice on the leaf so that the summing of two gradients (a path of
its own on the fast array path of backward) is exercised too."""

import numpy as np
import pytest

import scg
from scg import ops

# One function per primitive of scg.ops, of a leaf x (positive values keep log/sqrt/lgamma
# defined). Each uses x twice, through the primitive and around it.
USES = {
    "add": lambda x: ops.add(x, x),
    "subtract": lambda x: ops.subtract(x * 3, x),
    "multiply": lambda x: ops.multiply(x, x),
    "divide": lambda x: ops.divide(x, x + 1),
    "negative": lambda x: ops.negative(x) * x,
    "power": lambda x: ops.power(x, x),
    "maximum": lambda x: ops.maximum(x, x * 0.5) + x,
    "minimum": lambda x: ops.minimum(x, x * 2) + x,
    "exp": lambda x: ops.exp(x) + x,
    "log": lambda x: ops.log(x) + x,
    "log1p": lambda x: ops.log1p(x) + x,
    "expm1": lambda x: ops.expm1(x) + x,
    "sqrt": lambda x: ops.sqrt(x) + x,
    "tanh": lambda x: ops.tanh(x) + x,
    "arctan": lambda x: ops.arctan(x) + x,
    "erf": lambda x: ops.erf(x) + x,
    "erfinv": lambda x: ops.erfinv(ops.tanh(x)) + x,
    "ndtr": lambda x: ops.ndtr(x) + x,
    "ndtri": lambda x: ops.ndtri(ops.sigmoid(x)) + x,
    "tan": lambda x: ops.tan(x) + x,
    "sigmoid": lambda x: ops.sigmoid(x) + x,
    "softplus": lambda x: ops.softplus(x) + x,
    "bernoulli_log_prob": lambda x: ops.bernoulli_log_prob(x, x) + x,  # x both value and logits
    "bernoulli_score": lambda x: ops.bernoulli_score(x, x) * x,
    "bernoulli_score_times": lambda x: ops.bernoulli_score_times(x, x, x - 0.5) * x,
    "relu": lambda x: ops.relu(x) + x,
    "relu_grad": lambda x: ops.relu_grad(x, x - 1.5) * x,
    "abs": lambda x: ops.abs(x) + x,
    "digamma": lambda x: ops.digamma(x) + x,
    "polygamma_": lambda x: ops.polygamma(1, x) + x,
    "lgamma": lambda x: ops.lgamma(x) + x,
    "xlogy": lambda x: ops.xlogy(x, x + 1),
    "cos": lambda x: ops.cos(x) * x,
    "sin": lambda x: ops.sin(x) * x,
    "i0e": lambda x: ops.i0e(x) + x,
    "i1e": lambda x: ops.i1e(x) + x,
    "_where_p": lambda x: ops.where(x > 0, x * x, x),
    "less": lambda x: ops.where(ops.less(x, 2 * x), x, x * x),
    "less_equal": lambda x: ops.where(ops.less_equal(x, x), x, x * x),
    "greater": lambda x: ops.where(ops.greater(x, 0), x, x * x),
    "greater_equal": lambda x: ops.where(ops.greater_equal(x, 0), x, x * x),
    "equal": lambda x: ops.where(ops.equal(x, x), x, x * x),
    "not_equal": lambda x: ops.where(ops.not_equal(x, x), x * x, x),
    "logical_and": lambda x: ops.where(ops.logical_and(x > 0, x < 1), x, x * x),
    "logical_or": lambda x: ops.where(ops.logical_or(x > 5, x < 1), x, x * x),
    "logical_not": lambda x: ops.where(ops.logical_not(x > 5), x, x * x),
    "isfinite": lambda x: ops.where(ops.isfinite(x), x, x * x),
    "floor": lambda x: ops.floor(x * 3) * x + x,
    "first_max": lambda x: ops.where(ops.first_max(ops.stack([x, 2 * x], axis=-1))[..., 1], x * x, x),
    "_all": lambda x: ops.where(ops.all(x > 0), x, x * x),
    "_any": lambda x: ops.where(ops.any(x > 5), x * x, x),
    "_astype": lambda x: ops.astype(x, np.float64) * x,
    "_sum": lambda x: ops.sum(x) * x,
    "broadcast_to": lambda x: ops.sum(ops.broadcast_to(x, (3,) + x.shape)) + x,
    "_max": lambda x: ops.max(ops.stack([x, x * 2])) + x,
    "reshape": lambda x: ops.reshape(x, x.shape + (1,))[..., 0] * x,
    "_transpose": lambda x: ops.transpose(x) * x,
    "_getitem": lambda x: ops.getitem(ops.stack([x, x]), 1) * x,
    "scatter": lambda x: ops.sum(ops.scatter(x, index=0, shape=(2,) + x.shape)) * x,
    "_concatenate": lambda x: ops.sum(ops.concatenate([ops.expand_dims(x, 0)] * 2)) + x,
    "_matmul": lambda x: ops.matmul(ops.reshape(x, (1, -1)), ops.reshape(x, (-1, 1)))[0, 0] + x,
    "_stop": lambda x: ops.stop_gradient(x) * x,
}


def test_every_primitive_is_covered():
    primitives = {name for name, value in vars(ops).items() if hasattr(value, "vjps")}
    assert primitives == set(USES), f"missing: {primitives - set(USES)}, extra: {set(USES) - primitives}"


def _check(g, leaf, path):
    assert isinstance(g, scg.Tensor), path
    assert type(g.data) is np.ndarray, f"{path}: .data is {type(g.data).__name__}"
    assert g.data.shape == leaf.shape and g.data.dtype == leaf.dtype, (path, g.data.shape, g.data.dtype)
    arr = np.asarray(g)  # must not raise ("__array__ method not producing an array")
    assert type(arr) is np.ndarray and arr.dtype == leaf.dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(), (2,)], ids=["0d", "1d"])
@pytest.mark.parametrize("name", sorted(USES))
def test_gradient_is_an_ndarray_of_the_leaf_dtype(name, shape, dtype):
    fn = USES[name]
    value = np.full(shape, 0.7, dtype=dtype)

    def out(x):
        y = fn(x)
        return ops.sum(y) if y.shape else y

    for retain in (False, True):
        x = scg.tensor(value, requires_grad=True)
        y = out(x)
        y.backward(retain_graph=retain)
        _check(x.grad, x, f"backward(retain_graph={retain})")
        if retain:  # a second pass accumulates into .grad: still an ndarray
            y.backward()
            _check(x.grad, x, "second backward")
    for create in (False, True):
        x = scg.tensor(value, requires_grad=True)
        (g,) = scg.grad(out(x), x, create_graph=create)
        _check(g, x, f"grad(create_graph={create})")
        if create and g.requires_grad:
            (h,) = scg.grad(ops.sum(g), x)
            _check(h, x, "second-order grad")


def test_float32_leaf_met_by_float64_constant_gets_a_float32_gradient():
    x = scg.tensor(np.float32(0.5), requires_grad=True)
    y = x * np.array(2.0)  # numpy promotes the product to float64
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float32 and float(x.grad.data) == 2.0
    (g,) = scg.grad(x * np.array(3.0), x, create_graph=True)
    assert g.dtype == np.float32 and float(g.data) == 3.0

"""The reverse pass: accumulation, higher orders, memory and recursion, dtypes, and the
errors users meet."""

import gc
import sys
import weakref

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg.autodiff import primitive


def test_shared_subexpression_accumulates():
    x = scg.tensor(1.5, requires_grad=True)
    y = x * x + x  # x used three times
    d = y * y  # a diamond through y
    d.backward()
    # d = (x^2 + x)^2, d' = 2 (x^2 + x)(2x + 1)
    assert np.isclose(x.grad.item(), 2 * (1.5**2 + 1.5) * (2 * 1.5 + 1))


def test_backward_accumulates_across_calls_and_zero_grad():
    x = scg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0 + 2.0, 3.0 + 4.0])


def test_repeated_integer_indices_accumulate():
    a = scg.tensor(np.arange(4.0), requires_grad=True)
    (a[np.array([0, 0, 2, 0])] * np.array([1.0, 2.0, 3.0, 4.0])).sum().backward()
    np.testing.assert_allclose(a.grad.data, [7.0, 0.0, 3.0, 0.0])
    b = scg.tensor(np.ones((3, 2)), requires_grad=True)
    (b[[1, 1], [0, 0]]).sum().backward()
    np.testing.assert_allclose(b.grad.data, [[0, 0], [2, 0], [0, 0]])


def test_long_chain_has_no_recursion_limit():
    x = scg.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0 + 0.0
    assert y._parents  # 40,000 recorded operations
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default, 40x below the depth: a recursive backward fails
    try:
        (g,) = scg.grad(y, [x])
    finally:
        sys.setrecursionlimit(limit)
    assert g.item() == 1.0
    y = x
    for _ in range(100_000):
        y = y + 1e-6
    del y  # freeing a long chain must not overflow the C stack
    gc.collect()


def test_backward_frees_intermediates():
    x = scg.tensor(np.ones(3), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h)
    y = (h * h).sum()
    del h
    assert ref() is not None  # alive through y's record
    y.backward()
    gc.collect()
    assert ref() is None  # the pass dropped the record


def test_second_backward_without_retain_graph_is_explained():
    x = scg.tensor(2.0, requires_grad=True)
    y = x * x * x
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    z = x * x * x
    z.backward(retain_graph=True)
    z.backward()
    assert np.isclose(x.grad.item(), 12.0 + 2 * 12.0)


def test_third_derivative_via_create_graph():
    x = scg.tensor(1.3, requires_grad=True)
    y = x**4
    (d1,) = scg.grad(y, [x], create_graph=True)
    (d2,) = scg.grad(d1, [x], create_graph=True)
    (d3,) = scg.grad(d2, [x])
    assert np.isclose(d1.item(), 4 * 1.3**3)
    assert np.isclose(d2.item(), 12 * 1.3**2)
    assert np.isclose(d3.item(), 24 * 1.3)


def test_grad_with_respect_to_an_intermediate():
    x = scg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    y = (h * h).sum()
    gh, gx = scg.grad(y, [h, x])
    np.testing.assert_allclose(gh.data, 2 * h.data)
    np.testing.assert_allclose(gx.data, 18 * x.data)


def test_unused_input_gets_zeros_and_grad_leaves_dot_grad_alone():
    x = scg.tensor(1.0, requires_grad=True)
    w = scg.tensor([1.0, 2.0], requires_grad=True)
    (gw,) = scg.grad(x * 2.0, [w])
    np.testing.assert_array_equal(gw.data, [0.0, 0.0])
    assert x.grad is None and w.grad is None


def test_grad_outputs_weight_a_non_scalar_output():
    x = scg.tensor([1.0, 2.0], requires_grad=True)
    (g,) = scg.grad(x * x, [x], grad_outputs=np.array([1.0, -1.0]))
    np.testing.assert_allclose(g.data, [2.0, -4.0])


def test_no_grad_records_nothing():
    x = scg.tensor(1.0, requires_grad=True)
    with scg.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._parents == ()
    assert (x * 2.0).requires_grad


def test_stop_gradient_and_detach_block_every_order():
    x = scg.tensor(2.0, requires_grad=True)
    y = scg.stop_gradient(x) * x + x.detach() ** 2
    (g,) = scg.grad(y, [x], create_graph=True)
    assert g.item() == 2.0
    (h,) = scg.grad(g, [x])
    assert h.item() == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda x: (x * 2.5 + 1).exp().sum(),
        lambda x: scg.mean(scg.softplus(x)),
        lambda x: scg.max(x, axis=0).sum(),
        lambda x: scg.lgamma(x + 1.0).sum() + scg.digamma(x + 1.0).sum() + scg.polygamma(1, x + 1.0).sum(),
        lambda x: scg.logsumexp(x * 0.5, axis=-1).sum(),
        lambda x: (x @ x.T).sum(),
        lambda x: x[[0, 0, 1]].sum() / 3,
        lambda x: scg.sigmoid(x).sum() + scg.tanh(x).mean() + scg.sqrt(x * x + 1.0).sum(),
        lambda x: (x ** 2 - 1.0 / (x + 3.0)).sum(),
        lambda x: scg.log_softmax(x).sum() + scg.xlogy(x, x * x + 1.0).sum(),
    ],
)
def test_float32_is_preserved_forward_and_backward(make):
    x = scg.tensor(np.random.default_rng(0).uniform(0.5, 1.5, (2, 3)).astype(np.float32), requires_grad=True)
    y = make(x)
    assert y.dtype == np.float32
    (g,) = scg.grad(y, [x], create_graph=True)
    assert g.dtype == np.float32
    (h,) = scg.grad(g.sum(), [x])
    assert h.dtype == np.float32


def test_numpy_on_the_left_gives_tensors():
    x = scg.tensor([1.0, 2.0], requires_grad=True)
    a = np.array([3.0, 4.0])
    for y in (a + x, a - x, a * x, a / x, a**x, np.float64(2.0) * x):
        assert isinstance(y, scg.Tensor) and y.requires_grad
    y = np.ones((3, 2)) @ x
    assert isinstance(y, scg.Tensor) and y.shape == (3,)


# ---- errors ----------------------------------------------------------------------


def test_shape_mismatch_names_the_operation_and_both_shapes():
    with pytest.raises(ValueError, match=r"add.*\(2, 3\).*\(4,\)"):
        scg.tensor(np.ones((2, 3))) + np.ones(4)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\).*inner dimensions"):
        scg.tensor(np.ones((2, 3))) @ np.ones((4, 5))


def test_backward_on_non_scalar_needs_grad():
    x = scg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element output.*shape \(2,\)"):
        (x * 2.0).backward()


def test_grad_wrt_tensor_without_requires_grad():
    x = scg.tensor(1.0)
    w = scg.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="does not require grad"):
        scg.grad(w * x, [x])


def test_backward_on_constant_is_explained():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (scg.tensor(1.0) * 2.0).backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(ValueError, match="floating-point"):
        scg.tensor([1, 2], requires_grad=True)


def test_detect_anomaly_names_the_forward_op():
    x = scg.tensor([-1.0, 1.0], requires_grad=True)
    with np.errstate(invalid="ignore"):
        with scg.detect_anomaly():
            with pytest.raises(FloatingPointError, match="'log'"):
                scg.log(x)
        y = scg.log(x)  # outside the switch: NaN, no error
    assert np.isnan(y.data[0])


def test_detect_anomaly_names_the_backward_op():
    x = scg.tensor([0.0, 4.0], requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        with scg.detect_anomaly():
            y = scg.sqrt(x).sum()
            with pytest.raises(FloatingPointError, match="through 'sqrt'"):
                y.backward()


def test_gradient_through_custom_primitive():
    cube = primitive("cube", lambda x: x**3, lambda g, ans, x: g * 3 * x * x)
    assert scg.gradcheck(lambda x: cube(x), [np.array([0.5, -1.2])], order=2)


# ---- a graph freed by an earlier backward, and values changed in place after recording


def test_backward_through_a_freed_shared_subexpression_is_refused():
    mu = scg.tensor(1.0, requires_grad=True)
    h = mu * 3.0
    a, b = h * 2.0, h * 5.0
    a.backward()
    assert mu.grad.item() == 6.0
    with pytest.raises(RuntimeError, match="retain_graph"):
        b.backward()  # h's record was freed by a.backward(): not a silent zero
    mu = scg.tensor(1.0, requires_grad=True)
    h = mu * 3.0
    a, b = h * 2.0, h * 5.0
    a.backward(retain_graph=True)
    b.backward()
    assert mu.grad.item() == 6.0 + 15.0


def test_grad_twice_over_a_freed_shared_subexpression_is_refused():
    mu = scg.tensor(1.0, requires_grad=True)
    h = (mu * 3.0) * 1.0  # the freed records lie two steps behind b
    a, b = h * 2.0, h * 5.0
    assert scg.grad(a, [mu])[0].item() == 6.0
    with pytest.raises(RuntimeError, match="retain_graph"):
        scg.grad(b, [mu])
    assert scg.grad(h * 5.0, [h])[0].item() == 5.0  # h itself is asked for: its record is not needed
    mu = scg.tensor(1.0, requires_grad=True)
    h = mu * 3.0
    a, b = h * 2.0, h * 5.0
    assert scg.grad(a, [mu], retain_graph=True)[0].item() == 6.0
    assert scg.grad(b, [mu])[0].item() == 15.0


def test_an_optimizer_step_between_forward_and_backward_is_refused():
    x = scg.tensor(1.0, requires_grad=True)
    y = x * x  # dy/dx = 2x = 2 here
    x.grad = scg.tensor(2.0)
    scg.optim.SGD([x], lr=2.0).step()  # x becomes -3
    x.grad = None
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation.*'multiply'.*"
                                           r"is at version 1; expected version 0"):
        y.backward()  # would be 2 * (-3) = -6, from the new value
    assert x.version == 1
    y = x * x
    y.backward()
    assert x.grad.item() == -6.0


def test_adam_steps_and_load_state_dict_bump_the_version():
    layer = scg.nn.Linear(2, 1, dtype=np.float64)
    x = np.ones((1, 2))
    out = layer(x).sum()
    opt = scg.optim.Adam(layer.parameters(), lr=0.1)
    for p in layer.parameters():
        p.grad = scg.tensor(np.ones(p.shape))
    opt.step()
    with pytest.raises(RuntimeError, match="is at version 1; expected version 0"):
        out.backward()
    out = layer(x).sum()
    layer.load_state_dict(layer.state_dict())
    with pytest.raises(RuntimeError, match="is at version 2; expected version 1"):
        out.backward()
    assert [p.version for p in layer.parameters()] == [2, 2]


# ---- detect_anomaly accepts valid -inf values


def test_detect_anomaly_accepts_minus_inf_log_probs():
    with scg.detect_anomaly():
        logits = scg.tensor([0.0, -np.inf], requires_grad=True)
        lp = D.Categorical(logits=logits).log_prob(np.array(0))
        lp.backward()
        # log p(0) = 0 - log(e^0 + e^-inf) = 0; d/dlogits = onehot(0) - softmax = [0, 0]
        assert lp.item() == 0.0
        np.testing.assert_array_equal(logits.grad.data, [0.0, 0.0])
        p = scg.tensor(0.0, requires_grad=True)
        lp = D.Bernoulli(probs=p).log_prob(0.0)
        lp.backward()
        # log p(0) = log(1 - p) = 0 at p = 0; d/dp = -1 / (1 - p) = -1
        assert lp.item() == 0.0 and p.grad.item() == -1.0


def test_detect_anomaly_still_refuses_an_infinite_gradient():
    x = scg.tensor(0.0, requires_grad=True)
    with scg.detect_anomaly():
        y = scg.log(x)  # -inf is a valid value...
        assert y.item() == -np.inf
        with np.errstate(divide="ignore"):
            with pytest.raises(FloatingPointError, match="through 'log'.*NaN or Inf"):
                y.backward()  # ...but d log x / dx = 1 / 0 is not a valid gradient

"""scg.optim: SGD and Adam against hand-written numpy references, state_dict round trips.

References are written from the formulas (Kingma & Ba 2015 for Adam) in float64;
every test seeds its own generators.
"""

import math

import numpy as np
import pytest

import scg
from scg import nn, optim


def _param(values, dtype=np.float64):
    return nn.Parameter(np.asarray(values, dtype=dtype))


def _set_grad(p, g):
    p.grad = scg.tensor(np.asarray(g))


def _steps(opt, params, grads_per_step):
    """One optimizer step per entry of ``grads_per_step``, with those gradients set."""
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            _set_grad(p, g)
        opt.step()


def _grad_sequence(rng, shapes, steps):
    """steps lists of gradients, one array per shape."""
    return [[rng.normal(size=s) for s in shapes] for _ in range(steps)]


# ---- numpy references --------------------------------------------------------------------------


def _sgd_reference(params, grads_per_step, lr, momentum=0.0, weight_decay=0.0):
    params = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            d = g + weight_decay * params[i]
            velocity[i] = momentum * velocity[i] + d
            params[i] = params[i] - lr * velocity[i]
    return params


def _adam_reference(params, grads_per_step, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """Algorithm 1 of Kingma & Ba: bias-corrected moments, eps added to sqrt(v_hat)."""
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            g = g + weight_decay * params[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


# ---- SGD ------------------------------------------------------------------------------------------


def test_sgd_without_momentum_is_p_minus_lr_g():
    rng = np.random.default_rng(0)
    p0, g = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    p = _param(p0)
    _set_grad(p, g)
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, p0 - 0.1 * g, rtol=1e-15, atol=1e-15)


def test_sgd_step_uses_gradients_from_backward():
    rng = np.random.default_rng(0)
    p0, target = rng.normal(size=4), rng.normal(size=4)
    p = _param(p0)
    ((p - target) ** 2).sum().backward()
    optim.SGD([p], lr=0.25).step()
    # d/dp sum (p - t)^2 = 2 (p - t)
    np.testing.assert_allclose(p.data, p0 - 0.25 * 2 * (p0 - target), rtol=1e-14, atol=1e-14)


def test_sgd_momentum_three_steps_matches_numpy_recurrence():
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (2,)]
    p0 = [rng.normal(size=s) for s in shapes]
    grads = _grad_sequence(rng, shapes, 3)
    params = [_param(v) for v in p0]
    opt = optim.SGD(params, lr=0.05, momentum=0.9)
    _steps(opt, params, grads)

    # written out by hand: v1 = g1, v2 = 0.9 v1 + g2, v3 = 0.9 v2 + g3
    for i in range(2):
        g1, g2, g3 = (grads[k][i] for k in range(3))
        v1 = g1
        v2 = 0.9 * v1 + g2
        v3 = 0.9 * v2 + g3
        expected = p0[i] - 0.05 * (v1 + v2 + v3)
        np.testing.assert_allclose(params[i].data, expected, rtol=1e-13, atol=1e-13)
    assert opt.step_count == 3


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_sgd_weight_decay_adds_wd_times_p_to_the_gradient(momentum):
    rng = np.random.default_rng(0)
    shapes = [(4,), (2, 2)]
    p0 = [rng.normal(size=s) for s in shapes]
    grads = _grad_sequence(rng, shapes, 4)
    params = [_param(v) for v in p0]
    opt = optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=0.01)
    _steps(opt, params, grads)
    expected = _sgd_reference(p0, grads, lr=0.1, momentum=momentum, weight_decay=0.01)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-13, atol=1e-13)
    # and weight decay made a difference
    plain = _sgd_reference(p0, grads, lr=0.1, momentum=momentum)
    assert not np.allclose(params[0].data, plain[0], rtol=1e-9, atol=0)


def test_sgd_weight_decay_alone_shrinks_parameters():
    p = _param([2.0, -4.0])
    _set_grad(p, [0.0, 0.0])
    optim.SGD([p], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_allclose(p.data, [2.0 * (1 - 0.05), -4.0 * (1 - 0.05)], rtol=1e-15)


# ---- Adam -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hyper",
    [
        dict(lr=1e-3),
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6),
        dict(lr=0.01, betas=(0.0, 0.5), eps=1e-3),
    ],
)
def test_adam_matches_kingma_ba_reference_over_several_steps(hyper):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), ()]
    p0 = [rng.normal(size=s) for s in shapes]
    # gradients of varying scale, some tiny so that eps matters
    grads = _grad_sequence(rng, shapes, 7)
    grads[3] = [1e-7 * g for g in grads[3]]
    params = [_param(v) for v in p0]
    opt = optim.Adam(params, **hyper)
    _steps(opt, params, grads)
    b1, b2 = hyper.get("betas", (0.9, 0.999))
    expected = _adam_reference(p0, grads, lr=hyper["lr"], b1=b1, b2=b2, eps=hyper.get("eps", 1e-8))
    for p, e in zip(params, expected):
        assert p.dtype == np.float64
        np.testing.assert_allclose(p.data, e, rtol=1e-12, atol=1e-15)
    assert opt.step_count == 7


def test_adam_first_step_moves_each_coordinate_by_about_lr():
    # m_hat = g and v_hat = g^2 after one step, so the update is lr * sign(g).
    p = _param([1.0, 1.0, 1.0])
    _set_grad(p, [3.0, -0.02, 500.0])
    optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.9, 1.1, 0.9], rtol=1e-7)


def test_adam_weight_decay_matches_reference():
    rng = np.random.default_rng(1)
    shapes = [(5,), (2, 3)]
    p0 = [rng.normal(size=s) for s in shapes]
    grads = _grad_sequence(rng, shapes, 5)
    params = [_param(v) for v in p0]
    opt = optim.Adam(params, lr=0.01, weight_decay=0.1)
    _steps(opt, params, grads)
    expected = _adam_reference(p0, grads, lr=0.01, weight_decay=0.1)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-12, atol=1e-15)
    plain = _adam_reference(p0, grads, lr=0.01)
    assert not np.allclose(params[0].data, plain[0], rtol=1e-9, atol=0)


# ---- parameters without gradients -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: optim.SGD(ps, lr=0.1),
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.1),
    ],
    ids=["sgd", "sgd-momentum-wd", "adam-wd"],
)
def test_parameters_with_grad_none_are_skipped(make_opt):
    rng = np.random.default_rng(0)
    a0, b0, g = rng.normal(size=3), rng.normal(size=2), rng.normal(size=3)
    a, b = _param(a0), _param(b0)
    opt = make_opt([a, b])
    for _ in range(3):
        _set_grad(a, g)
        b.grad = None
        opt.step()
    assert np.array_equal(b.data, b0)  # not even weight decay touches it
    assert not np.allclose(a.data, a0)


def test_adam_parameter_without_grad_at_first_gets_a_fresh_first_step():
    """A parameter skipped for some steps has taken no Adam step yet: when its first
    gradient arrives its bias correction is that of step 1 (as in Kingma & Ba, applied
    per parameter, and as in torch.optim.Adam), so it moves by lr * sign(g), exactly as
    a parameter that had its own fresh optimizer."""
    rng = np.random.default_rng(0)
    a0, b0 = rng.normal(size=3), rng.normal(size=2)
    a, b = _param(a0), _param(b0)
    opt = optim.Adam([a, b], lr=0.1)
    for _ in range(4):  # b gets no gradient for four steps
        _set_grad(a, rng.normal(size=3))
        b.grad = None
        opt.step()
    g_b = rng.normal(size=2)
    _set_grad(a, rng.normal(size=3))
    _set_grad(b, g_b)
    opt.step()
    (expected,) = _adam_reference([b0], [[g_b]], lr=0.1)
    np.testing.assert_allclose(b.data, expected, rtol=1e-12)


# ---- dtypes and in-place updates ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: optim.SGD(ps, lr=0.1),
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01),
    ],
    ids=["sgd", "sgd-momentum", "adam"],
)
@pytest.mark.parametrize("grad_dtype", [np.float32, np.float64])
def test_optimizers_keep_float32_parameters_float32_and_update_in_place(make_opt, grad_dtype):
    rng = np.random.default_rng(0)
    p = _param(rng.normal(size=(3, 2)), dtype=np.float32)
    buffer = p.data
    opt = make_opt([p])
    for _ in range(3):
        p.grad = scg.tensor(rng.normal(size=(3, 2)).astype(grad_dtype))
        opt.step()
    assert p.dtype == np.float32
    assert p.data is buffer
    for arrays in opt.state_dict()["state"].values():
        assert all(a.dtype == np.float32 for a in arrays)


def test_float32_adam_is_close_to_the_float64_reference():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3))
    grads = _grad_sequence(rng, [(4, 3)], 5)
    p = _param(p0, dtype=np.float32)
    opt = optim.Adam([p], lr=0.01)
    for (g,) in grads:
        p.grad = scg.tensor(g.astype(np.float32))
        opt.step()
    (expected,) = _adam_reference([p0.astype(np.float32).astype(np.float64)],
                                  [[g.astype(np.float32).astype(np.float64)] for (g,) in grads], lr=0.01)
    np.testing.assert_allclose(p.data, expected, rtol=1e-5, atol=1e-6)


# ---- resuming training from state dicts ---------------------------------------------------------


def _regression_data():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = (np.sin(x.sum(1, keepdims=True)) + 0.1 * x[:, :1]).astype(np.float32)
    return x, y


def _train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=1e-3),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    ],
    ids=["adam", "sgd-momentum"],
)
def test_state_dicts_make_training_resume_exactly(make_opt):
    x, y = _regression_data()
    k, n = 5, 6

    model = nn.MLP([3, 8, 1], rng=np.random.default_rng(0))
    opt = make_opt(model.parameters())
    _train(model, opt, x, y, k)
    model_state, opt_state = model.state_dict(), opt.state_dict()
    saved = {name: v.copy() for name, v in model_state.items()}

    _train(model, opt, x, y, n)
    result_a = model.state_dict()

    fresh = nn.MLP([3, 8, 1], rng=np.random.default_rng(123))
    fresh_opt = make_opt(fresh.parameters())
    fresh.load_state_dict(model_state)
    fresh_opt.load_state_dict(opt_state)
    assert fresh_opt.step_count == k
    _train(fresh, fresh_opt, x, y, n)
    result_b = fresh.state_dict()

    assert list(result_a) == list(result_b)
    for name in result_a:
        assert result_a[name].dtype == result_b[name].dtype == np.float32
        assert np.array_equal(result_a[name], result_b[name]), name
    # The continuation really trained (so equality above is not vacuous) ...
    assert any(not np.array_equal(result_a[name], saved[name]) for name in saved)

    # ... and starting over with fresh optimizer state would not give the same result.
    restart = nn.MLP([3, 8, 1], rng=np.random.default_rng(7))
    restart.load_state_dict(model_state)
    _train(restart, make_opt(restart.parameters()), x, y, n)
    assert any(not np.array_equal(result_a[name], v) for name, v in restart.state_dict().items())


def test_optimizer_state_dict_contents():
    p = _param(np.ones(3))
    opt = optim.Adam([p], lr=0.02, betas=(0.8, 0.9), eps=1e-7)
    for g in ([1.0, 2.0, 3.0], [0.5, -1.0, 2.0]):
        _set_grad(p, g)
        opt.step()
    sd = opt.state_dict()
    assert sd["step"] == 2
    assert sd["hyper"]["lr"] == 0.02
    assert tuple(sd["hyper"]["betas"]) == (0.8, 0.9)
    assert sd["hyper"]["eps"] == 1e-7
    # m = b1 (1-b1) g1 + (1-b1) g2 ; v likewise with squares
    g1, g2 = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(sd["state"]["m"][0], 0.8 * 0.2 * g1 + 0.2 * g2, rtol=1e-14)
    np.testing.assert_allclose(sd["state"]["v"][0], 0.9 * 0.1 * g1**2 + 0.1 * g2**2, rtol=1e-14)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: optim.Adam(ps, lr=0.01),
        lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9),
    ],
    ids=["adam", "sgd-momentum"],
)
def test_optimizer_state_dict_is_a_copy(make_opt):
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=4)
    grads = [rng.normal(size=4) for _ in range(4)]
    p, twin = _param(p0), _param(p0)
    opt, twin_opt = make_opt([p]), make_opt([twin])
    for g in grads[:2]:
        _set_grad(p, g)
        _set_grad(twin, g)
        opt.step()
        twin_opt.step()

    sd = opt.state_dict()
    for arrays in sd["state"].values():
        for a in arrays:
            a += 1000.0
    sd["hyper"]["lr"] = 1000.0
    sd["step"] = 99

    for g in grads[2:]:
        _set_grad(p, g)
        _set_grad(twin, g)
        opt.step()
        twin_opt.step()
    assert np.array_equal(p.data, twin.data)
    assert opt.hyper["lr"] == 0.01
    assert opt.step_count == 4


def test_optimizer_load_state_dict_copies_its_input():
    rng = np.random.default_rng(0)
    p0, grads = rng.normal(size=4), [rng.normal(size=4) for _ in range(4)]
    p, q = _param(p0), _param(p0)
    opt, opt_q = optim.Adam([p], lr=0.01), optim.Adam([q], lr=0.01)
    for g in grads[:2]:
        _set_grad(p, g)
        opt.step()
    sd = opt.state_dict()
    q.data[...] = p.data
    opt_q.load_state_dict(sd)
    for arrays in sd["state"].values():  # mutate after loading
        for a in arrays:
            a *= -5.0
    for g in grads[2:]:
        _set_grad(p, g)
        _set_grad(q, g)
        opt.step()
        opt_q.step()
    assert np.array_equal(p.data, q.data)


def _stepped_adam(shapes):
    params = [_param(np.zeros(s)) for s in shapes]
    opt = optim.Adam(params, lr=0.01)
    for p in params:
        _set_grad(p, np.ones(p.shape))
    opt.step()
    return opt


def test_load_state_dict_with_a_different_parameter_count_raises():
    sd = _stepped_adam([(3,), (2,)]).state_dict()
    target_params = [_param(np.zeros(3)), _param(np.zeros(2)), _param(np.zeros(4))]
    target = optim.Adam(target_params, lr=0.01)
    with pytest.raises(ValueError, match=r"2 .*3 param"):
        target.load_state_dict(sd)
    assert target.step_count == 0 and target.state == {}


def test_load_state_dict_with_a_different_parameter_shape_raises():
    sd = _stepped_adam([(3,), (2,)]).state_dict()
    target = optim.Adam([_param(np.zeros(3)), _param(np.zeros(5))], lr=0.01)
    with pytest.raises(ValueError) as info:
        target.load_state_dict(sd)
    message = str(info.value)
    assert "parameter 1" in message
    assert "(2,)" in message and "(5,)" in message
    assert target.step_count == 0 and target.state == {}


def test_load_state_dict_parameter_count_is_checked_even_without_per_parameter_state():
    """Plain SGD keeps no per-parameter arrays; its state dict must still refuse to load
    into an optimizer over a different number of parameters."""
    source = optim.SGD([_param(np.zeros(3)), _param(np.zeros(2))], lr=0.1)
    for p in source.params:
        _set_grad(p, np.ones(p.shape))
    source.step()
    target = optim.SGD([_param(np.zeros(3)), _param(np.zeros(2)), _param(np.zeros(4))], lr=0.1)
    with pytest.raises(ValueError):
        target.load_state_dict(source.state_dict())


# ---- argument validation --------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_invalid_learning_rate_raises(cls, lr):
    with pytest.raises(ValueError, match="lr must be positive"):
        cls([_param(np.zeros(2))], lr=lr)


@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5])
def test_sgd_momentum_outside_unit_interval_raises(momentum):
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([_param(np.zeros(2))], lr=0.1, momentum=momentum)


@pytest.mark.parametrize("betas", [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, -0.5), (0.9, 2.0)])
def test_adam_betas_outside_unit_interval_raise(betas):
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([_param(np.zeros(2))], lr=0.1, betas=betas)


@pytest.mark.parametrize("cls, hyper, message", [
    (optim.Adam, dict(lr=float("inf")), "lr must be positive and finite"),
    (optim.Adam, dict(eps=0.0), "eps must be positive and finite"),
    (optim.Adam, dict(eps=float("nan")), "eps must be positive and finite"),
    (optim.Adam, dict(weight_decay=-1.0), "weight_decay must be finite and >= 0"),
    (optim.Adam, dict(betas=(0.9,)), "betas must be a pair"),
    (optim.SGD, dict(lr=0.1, weight_decay=float("nan")), "weight_decay must be finite and >= 0"),
    (optim.SGD, dict(lr="0.1"), "lr must be positive and finite, got '0.1'"),
])
def test_constructors_refuse_invalid_hyperparameters_naming_them(cls, hyper, message):
    with pytest.raises(ValueError, match=message):
        cls([_param(np.zeros(2))], **hyper)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.update(lr=-1), "lr must be positive and finite, got -1"),
    (lambda h: h.update(lr=float("nan")), "lr must be positive and finite, got nan"),
    (lambda h: h.update(betas=(0.9, 1.0)), r"betas must be in \[0, 1\), got 1.0"),
    (lambda h: h.update(betas=(-0.1, 0.999)), r"betas must be in \[0, 1\)"),
    (lambda h: h.update(eps=0), "eps must be positive and finite, got 0"),
    (lambda h: h.pop("eps"), "hyperparameters missing eps"),
    (lambda h: h.update(momentum=0.9), "hyperparameters unknown momentum"),
])
def test_adam_load_state_dict_refuses_invalid_hyperparameters_naming_them(edit, message):
    sd = _stepped_adam([(3,)]).state_dict()
    edit(sd["hyper"])
    target = optim.Adam([_param(np.zeros(3))], lr=0.01)
    with pytest.raises(ValueError, match="Adam.load_state_dict: " + message):
        target.load_state_dict(sd)
    assert target.hyper["lr"] == 0.01 and target.step_count == 0 and target.state == {}


@pytest.mark.parametrize("hyper, message", [(dict(lr=-1.0, momentum=0.0, weight_decay=0.0), "lr must be positive"),
                                            (dict(lr=0.1, momentum=1.0, weight_decay=0.0), "momentum must be in"),
                                            (dict(lr=0.1, momentum=0.0, weight_decay=-1), "weight_decay must be")])
def test_sgd_load_state_dict_refuses_invalid_hyperparameters_naming_them(hyper, message):
    target = optim.SGD([_param(np.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="SGD.load_state_dict: " + message):
        target.load_state_dict({"hyper": hyper, "step": 0, "state": {}})


def test_load_state_dict_refuses_a_stepped_state_without_its_moments():
    sd = _stepped_adam([(3,)]).state_dict()
    del sd["state"]["v"]
    with pytest.raises(ValueError, match="state v missing after 1 step"):
        optim.Adam([_param(np.zeros(3))], lr=0.01).load_state_dict(sd)
    sd["step"] = -1
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        optim.Adam([_param(np.zeros(3))], lr=0.01).load_state_dict(sd)


def test_boundary_hyperparameters_are_accepted():
    optim.SGD([_param(np.zeros(2))], lr=1e-12, momentum=0.0)
    optim.SGD([_param(np.zeros(2))], lr=0.1, momentum=0.999)
    optim.Adam([_param(np.zeros(2))], lr=0.1, betas=(0.0, 0.0))


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_empty_or_non_trainable_parameters_raise(cls):
    with pytest.raises(ValueError):
        cls([], lr=0.1)
    with pytest.raises(ValueError, match="grad"):
        cls([scg.tensor(np.zeros(2))], lr=0.1)


def test_optimizer_zero_grad_clears_grads():
    p, q = _param(np.zeros(2)), _param(np.zeros(3))
    _set_grad(p, np.ones(2))
    _set_grad(q, np.ones(3))
    opt = optim.SGD([p, q], lr=0.1)
    opt.zero_grad()
    assert p.grad is None and q.grad is None


# ---- end to end -------------------------------------------------------------------------------------


def test_adam_fits_a_small_regression_problem():
    scg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    w_true = np.array([[1.5], [-2.0], [0.5]], dtype=np.float32)
    y = x @ w_true + 0.3
    model = nn.MLP([3, 16, 1], rng=rng)
    opt = optim.Adam(model.parameters(), lr=0.02)

    initial = float(((model(x) - y) ** 2).mean().item())
    losses = []
    for _ in range(400):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    final = float(((model(x) - y) ** 2).mean().item())
    assert math.isfinite(final)
    assert final < initial / 100, (initial, final)
    assert final < 0.05
    assert all(p.dtype == np.float32 for p in model.parameters())


# ---- the update split into row blocks on worker threads (must equal the plain loop) ----


def _params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [scg.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]


SHAPES = [(784, 400), (400,), (400, 40), (40,), (20, 400), (400,), (400, 784), (784,), (3, 1, 5)]


@pytest.mark.parametrize("make", [lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1),
                                  lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=0.1)])
def test_threads_give_bit_for_bit_the_single_thread_update(make, monkeypatch):
    results = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("SCG_NUM_THREADS", n)
        ps = _params(SHAPES)
        opt = make(ps)
        rng = np.random.default_rng(1)
        for step in range(4):
            for j, p in enumerate(ps):  # parameter 1 skips step 2: it has no gradient then
                p.grad = None if (j == 1 and step == 2) else scg.Tensor(rng.standard_normal(p.shape).astype(np.float32))
            opt.step()
        results.append([p.data.copy() for p in ps])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)
    assert not np.array_equal(results[0][0], _params(SHAPES)[0].data)  # the update did something


def test_adam_matches_the_formula_on_blocks():
    """Against Adam written out in float64 for two steps, on a parameter big enough to be cut."""
    p = _params([(600, 300)])[0]
    x0 = p.data.astype(np.float64)
    opt = optim.Adam([p], lr=1e-2, betas=(0.8, 0.95), eps=1e-6)
    rng = np.random.default_rng(3)
    m = v = 0
    x = x0
    for t in (1, 2):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad = scg.Tensor(g)
        opt.step()
        m = 0.8 * m + 0.2 * g
        v = 0.95 * v + 0.05 * g.astype(np.float64) ** 2
        x = x - 1e-2 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.95**t)) + 1e-6)
    np.testing.assert_allclose(p.data, x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_blocks_cover_every_row_once_and_balance(n):
    groups = optim._blocks(SHAPES, n)
    assert len(groups) == n
    covered = {i: np.zeros(s[0] if s else 1, int) for i, s in enumerate(SHAPES)}
    loads = []
    for group in groups:
        load = 0
        for i, sl in group:
            rows = covered[i][sl if sl is not None else slice(None)]
            rows += 1
            load += int(np.prod(SHAPES[i])) * len(rows) // len(covered[i])
        loads.append(load)
    assert all((c == 1).all() for c in covered.values())
    assert max(loads) <= 1.3 * sum(loads) / n, loads


def test_small_problems_stay_on_one_thread():
    assert optim._blocks([(10, 10), (10,)], 2) == [[(0, None), (1, None)]]

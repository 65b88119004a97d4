"""Modules and optimizers: parameters, state dicts (with their errors), update rules
against hand-written numpy, and exact resumption."""

import numpy as np
import pytest

import scg


def test_linear_forward_and_gradients_match_numpy(rng):
    lin = scg.nn.Linear(4, 3, dtype=np.float64, rng=rng)
    x = rng.normal(size=(5, 4))
    y = lin(scg.tensor(x))
    np.testing.assert_allclose(y.data, x @ lin.weight.data + lin.bias.data)
    g = rng.normal(size=(5, 3))
    y.backward(g)
    np.testing.assert_allclose(lin.weight.grad.data, x.T @ g)
    np.testing.assert_allclose(lin.bias.grad.data, g.sum(0))


def test_linear_initialization_bounds_dtype_and_seed():
    scg.manual_seed(3)
    a = scg.nn.Linear(100, 7)
    scg.manual_seed(3)
    b = scg.nn.Linear(100, 7)
    assert a.weight.dtype == np.float32
    assert np.all(np.abs(a.weight.data) <= 0.1) and np.all(np.abs(a.bias.data) <= 0.1)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert a.weight.data.std() > 0.04  # uniform on [-0.1, 0.1] has sd 0.058


def test_linear_rejects_wrong_input_width():
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\): its last axis must be 4"):
        scg.nn.Linear(4, 3)(scg.tensor(np.ones((2, 5), np.float32)))


def test_mlp_structure_and_parameter_names():
    m = scg.nn.MLP([4, 8, 3])
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Linear", "ReLU", "Linear"]
    names = [n for n, _ in m.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        scg.nn.MLP([2, 2], activation="swish")


def test_shared_parameters_are_listed_once():
    lin = scg.nn.Linear(2, 2)
    seq = scg.nn.Sequential(lin, scg.nn.Tanh(), lin)
    assert len(seq.parameters()) == 2


def test_state_dict_round_trip_and_copies(rng):
    m = scg.nn.MLP([3, 5, 2])
    x = scg.tensor(rng.normal(size=(4, 3)).astype(np.float32))
    before = m(x).data.copy()
    sd = m.state_dict()
    sd["layers.0.weight"][...] = 0  # a copy: the model is unchanged
    assert np.array_equal(m(x).data, before)
    other = scg.nn.MLP([3, 5, 2])
    other.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(other(x).data, before)


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (lambda sd: sd.pop("layers.0.bias"), KeyError, r"missing keys \['layers.0.bias'\]"),
        (lambda sd: sd.update(extra=np.zeros(1)), KeyError, r"unexpected keys \['extra'\]"),
        (lambda sd: sd.update({"layers.2.weight": np.zeros((4, 2))}), ValueError,
         r"'layers.2.weight' has shape \(4, 2\) in the state dict but \(5, 2\) in the model"),
    ],
)
def test_load_state_dict_errors_leave_model_unchanged(mutate, error, message):
    m = scg.nn.MLP([3, 5, 2])
    before = {k: v.copy() for k, v in m.state_dict().items()}
    sd = m.state_dict()
    sd["layers.0.weight"] = sd["layers.0.weight"] + 1
    mutate(sd)
    with pytest.raises(error, match=message):
        m.load_state_dict(sd)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def _quadratic_grads(params, targets):
    loss = None
    for p, t in zip(params, targets):
        term = ((p - t) ** 2).sum()
        loss = term if loss is None else loss + term
    return loss


def test_sgd_momentum_matches_the_recurrence():
    p = scg.nn.Parameter(np.array([1.0, -2.0]))
    opt = scg.optim.SGD([p], lr=0.1, momentum=0.9)
    ref, v = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(3):
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
        g = 2 * ref
        v = 0.9 * v + g
        ref = ref - 0.1 * v
    np.testing.assert_allclose(p.data, ref, rtol=1e-14)


def test_adam_matches_kingma_and_ba():
    p = scg.nn.Parameter(np.array([0.5, -1.5, 3.0]))
    opt = scg.optim.Adam([p], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    ref, m, v = p.data.copy(), np.zeros(3), np.zeros(3)
    for t in range(1, 6):
        opt.zero_grad()
        (p**3).sum().backward()
        opt.step()
        g = 3 * ref**2
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        m_hat, v_hat = m / (1 - 0.8**t), v / (1 - 0.99**t)
        ref = ref - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-6)
    np.testing.assert_allclose(p.data, ref, rtol=1e-12)


def test_parameters_without_grad_are_skipped_and_dtype_kept():
    a = scg.nn.Parameter(np.ones(2, np.float32))
    b = scg.nn.Parameter(np.ones(2, np.float32))
    opt = scg.optim.Adam([a, b], lr=0.1)
    (a * a).sum().backward()
    opt.step()
    assert np.all(a.data < 1) and np.array_equal(b.data, np.ones(2)) and a.dtype == np.float32


@pytest.mark.parametrize("make", [lambda ps: scg.optim.Adam(ps, lr=0.01),
                                  lambda ps: scg.optim.SGD(ps, lr=0.05, momentum=0.9)])
def test_resuming_from_state_dicts_is_exact(make, rng):
    x = scg.tensor(rng.normal(size=(16, 3)).astype(np.float32))
    y = rng.normal(size=(16, 1)).astype(np.float32)

    def run(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()

    scg.manual_seed(1)
    a = scg.nn.MLP([3, 8, 1])
    opt_a = make(a.parameters())
    run(a, opt_a, 5)
    saved_model, saved_opt = a.state_dict(), opt_a.state_dict()
    run(a, opt_a, 5)
    b = scg.nn.MLP([3, 8, 1])
    b.load_state_dict(saved_model)
    opt_b = make(b.parameters())
    opt_b.load_state_dict(saved_opt)
    run(b, opt_b, 5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert np.array_equal(pa.data, pb.data)


def test_optimizer_state_dict_is_a_copy_and_checked():
    p = scg.nn.Parameter(np.ones(3))
    opt = scg.optim.Adam([p])
    (p * p).sum().backward()
    opt.step()
    sd = opt.state_dict()
    sd["state"]["m"][0][...] = 99
    assert not np.any(opt.state["m"][0] == 99)
    other = scg.optim.Adam([scg.nn.Parameter(np.ones(4))])
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(4,\)"):
        other.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="2 parameters"):
        scg.optim.Adam([scg.nn.Parameter(np.ones(3)), scg.nn.Parameter(np.ones(3))]).load_state_dict(
            opt.state_dict())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: scg.optim.SGD(p, lr=0), "lr must be positive"),
        (lambda p: scg.optim.SGD(p, lr=0.1, momentum=1.0), "momentum"),
        (lambda p: scg.optim.Adam(p, betas=(0.9, 1.0)), "betas"),
        (lambda p: scg.optim.Adam(p, lr=-1), "lr must be positive"),
    ],
)
def test_invalid_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make([scg.nn.Parameter(np.ones(2))])


def test_adam_fits_a_regression(rng):
    x = rng.normal(size=(64, 2))
    y = x @ np.array([[2.0], [-1.0]]) + 0.5
    scg.manual_seed(0)
    model = scg.nn.Linear(2, 1, dtype=np.float64)
    opt = scg.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = ((model(scg.tensor(x)) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-4 * losses[0]

"""scg.nn: Parameter, Module parameter discovery, Linear, MLP, state_dict round trips.

Expected values come from plain numpy; every test seeds its own generators.
"""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scg
from scg import nn


def _snapshot(model):
    """Independent copies of every parameter array, keyed by name."""
    return {name: np.array(p.data, copy=True) for name, p in model.named_parameters()}


def _assert_same_params(model, snapshot):
    names = [name for name, _ in model.named_parameters()]
    assert names == list(snapshot)
    for name, p in model.named_parameters():
        assert np.array_equal(p.data, snapshot[name]), name
        assert p.data.dtype == snapshot[name].dtype, name


# ---- Parameter ----------------------------------------------------------------------------


def test_parameter_requires_grad_and_is_a_leaf():
    p = nn.Parameter(np.zeros(3))
    assert isinstance(p, scg.Tensor)
    assert p.requires_grad
    assert p.is_leaf
    assert p.grad is None


def test_parameter_copies_an_ndarray():
    source = np.arange(6.0).reshape(2, 3)
    p = nn.Parameter(source)
    source[0, 0] = 100.0
    assert p.data[0, 0] == 0.0
    p.data[1, 1] = -7.0
    assert source[1, 1] == 4.0


def test_parameter_copies_a_tensor_and_does_not_share_its_graph():
    t = scg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    p = nn.Parameter(t)
    t.data[0] = 50.0
    assert np.array_equal(p.data, [1.0, 2.0, 3.0])
    assert p.is_leaf and p.requires_grad


def test_parameter_keeps_dtype_and_converts_when_asked():
    assert nn.Parameter(np.zeros(2, dtype=np.float32)).dtype == np.float32
    assert nn.Parameter(np.zeros(2, dtype=np.float32), dtype=np.float64).dtype == np.float64


# ---- Module parameter discovery -----------------------------------------------------------


class _Leaf(nn.Module):
    def __init__(self, n):
        self.w = nn.Parameter(np.full(n, float(n)))


class _Tree(nn.Module):
    def __init__(self):
        self.a = nn.Parameter(np.zeros(2))
        self.child = _Leaf(3)
        self.layers = [_Leaf(4), nn.Parameter(np.ones(5)), _Leaf(6)]
        self.pair = (nn.Parameter(np.ones(1)), _Leaf(7))
        self.not_a_param = np.ones(8)  # a plain array is not a parameter
        self.number = 3.0
        self.nothing = None


def test_named_parameters_finds_attributes_nested_modules_lists_and_tuples():
    tree = _Tree()
    names = [name for name, _ in tree.named_parameters()]
    assert names == [
        "a",
        "child.w",
        "layers.0.w",
        "layers.1",
        "layers.2.w",
        "pair.0",
        "pair.1.w",
    ]
    shapes = [p.shape for _, p in tree.named_parameters()]
    assert shapes == [(2,), (3,), (4,), (5,), (6,), (1,), (7,)]
    assert [id(p) for p in tree.parameters()] == [id(p) for _, p in tree.named_parameters()]
    assert all(isinstance(p, nn.Parameter) for p in tree.parameters())


def test_named_parameters_prefix():
    names = [name for name, _ in _Leaf(2).named_parameters(prefix="enc.")]
    assert names == ["enc.w"]


def test_shared_parameter_is_listed_once_under_its_first_name():
    class Tied(nn.Module):
        def __init__(self):
            self.first = nn.Parameter(np.zeros(3))
            self.other = nn.Parameter(np.zeros(2))
            self.again = self.first
            self.in_list = [self.first, self.other]

    tied = Tied()
    named = list(tied.named_parameters())
    assert [name for name, _ in named] == ["first", "other"]
    assert named[0][1] is tied.first
    assert len(tied.parameters()) == 2


def test_shared_submodule_parameters_are_listed_once():
    shared = nn.Linear(3, 3, rng=np.random.default_rng(0))
    model = nn.Sequential(shared, nn.ReLU(), shared)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias"]
    assert model.parameters()[0] is shared.weight


def test_zero_grad_clears_every_parameter_grad():
    model = nn.MLP([3, 4, 2], rng=np.random.default_rng(0))
    model(np.ones((2, 3), dtype=np.float32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---- Linear ---------------------------------------------------------------------------------


def test_linear_parameter_shapes_names_and_default_dtype():
    layer = nn.Linear(5, 3, rng=np.random.default_rng(0))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.shape == (5, 3)
    assert layer.bias.shape == (3,)
    assert layer.weight.dtype == np.float32
    assert layer.bias.dtype == np.float32
    out = layer(np.ones((2, 5), dtype=np.float32))
    assert out.dtype == np.float32


def test_linear_without_bias_has_only_a_weight():
    layer = nn.Linear(4, 2, bias=False, dtype=np.float64, rng=np.random.default_rng(0))
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_forward_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3, dtype=dtype, rng=rng)
    x = rng.normal(size=(6, 4)).astype(dtype)
    expected = x @ layer.weight.data + layer.bias.data
    out = layer(scg.tensor(x))
    assert out.shape == (6, 3)
    assert out.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(out.data, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 5)])
def test_linear_gradients_match_hand_derived_formulas(batch_shape):
    """With L = sum(y * G): dL/dW = x^T G, dL/db = sum_rows G, dL/dx = G W^T."""
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3, dtype=np.float64, rng=rng)
    x_np = rng.normal(size=batch_shape + (4,))
    g_np = rng.normal(size=batch_shape + (3,))
    x = scg.tensor(x_np, requires_grad=True)
    (layer(x) * g_np).sum().backward()

    x_rows, g_rows = x_np.reshape(-1, 4), g_np.reshape(-1, 3)
    np.testing.assert_allclose(layer.weight.grad.data, x_rows.T @ g_rows, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.data, g_rows.sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.data, g_np @ layer.weight.data.T, rtol=1e-12, atol=1e-12)
    assert layer.weight.grad.shape == (4, 3)
    assert layer.bias.grad.shape == (3,)


@settings(deadline=None, max_examples=30)
@given(
    batch=st.integers(1, 6),
    n_in=st.integers(1, 7),
    n_out=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_linear_forward_and_weight_grad_for_any_sizes(batch, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    layer = nn.Linear(n_in, n_out, dtype=np.float64, rng=rng)
    x = rng.normal(size=(batch, n_in))
    g = rng.normal(size=(batch, n_out))
    y = layer(x)
    np.testing.assert_allclose(y.data, x @ layer.weight.data + layer.bias.data, rtol=1e-12, atol=1e-12)
    (y * g).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.data, x.T @ g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.data, g.sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fan_in,fan_out", [(1, 4), (3, 50), (100, 200)])
def test_linear_initialization_is_within_one_over_sqrt_fan_in(fan_in, fan_out):
    layer = nn.Linear(fan_in, fan_out, rng=np.random.default_rng(0))
    bound = 1.0 / math.sqrt(fan_in)
    slack = bound * 1e-6  # float32 rounding of a value drawn just below the bound
    for p in (layer.weight, layer.bias):
        assert np.all(np.abs(p.data.astype(np.float64)) <= bound + slack)
    # ... and actually spread over that interval (not, say, all zeros or a tiny scale).
    w = layer.weight.data.astype(np.float64)
    if w.size >= 50:
        assert np.abs(w).max() > 0.9 * bound
        assert w.min() < 0 < w.max()
        # Uniform(-b, b) has standard deviation b / sqrt(3).
        assert abs(w.std() - bound / math.sqrt(3)) < 0.15 * bound


def test_manual_seed_makes_linear_initialization_reproducible():
    scg.manual_seed(0)
    a = nn.Linear(6, 4)
    scg.manual_seed(0)
    b = nn.Linear(6, 4)
    scg.manual_seed(1)
    c = nn.Linear(6, 4)
    assert np.array_equal(a.weight.data, b.weight.data)
    assert np.array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, c.weight.data)


def test_manual_seed_makes_mlp_initialization_reproducible_and_layers_differ():
    scg.manual_seed(0)
    a = nn.MLP([4, 4, 4])
    scg.manual_seed(0)
    b = nn.MLP([4, 4, 4])
    for (name_a, pa), (name_b, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert name_a == name_b
        assert np.array_equal(pa.data, pb.data)
    # The two layers draw successive numbers, not the same ones.
    assert not np.array_equal(a[0].weight.data, a[2].weight.data)


def test_explicit_rng_is_used_instead_of_the_library_generator():
    scg.manual_seed(0)
    a = nn.Linear(3, 2, rng=np.random.default_rng(7))
    scg.manual_seed(12345)
    b = nn.Linear(3, 2, rng=np.random.default_rng(7))
    assert np.array_equal(a.weight.data, b.weight.data)
    expected = np.random.default_rng(7).uniform(-1 / math.sqrt(3), 1 / math.sqrt(3), (3, 2))
    np.testing.assert_allclose(a.weight.data, expected.astype(np.float32), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 5), (5,), (3, 2, 3)])
def test_linear_wrong_last_axis_raises_naming_expected_size_and_shape(shape):
    layer = nn.Linear(4, 3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError) as info:
        layer(scg.tensor(np.zeros(shape, dtype=np.float32)))
    assert f"input of shape {shape}: its last axis must be 4" in str(info.value)


# ---- Sequential and MLP -----------------------------------------------------------------------


def test_mlp_layer_structure():
    mlp = nn.MLP([4, 8, 3], rng=np.random.default_rng(0))
    assert len(mlp) == 3
    assert [type(layer) for layer in mlp.layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features) == (4, 8)
    assert (mlp[2].in_features, mlp[2].out_features) == (8, 3)
    assert [name for name, _ in mlp.named_parameters()] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    assert [p.shape for p in mlp.parameters()] == [(4, 8), (8,), (8, 3), (3,)]


def test_mlp_activation_choice_and_final_activation():
    mlp = nn.MLP([2, 3, 3, 1], activation="tanh", final_activation="sigmoid", rng=np.random.default_rng(0))
    assert [type(layer) for layer in mlp.layers] == [
        nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear, nn.Sigmoid,
    ]


def test_mlp_forward_matches_numpy():
    rng = np.random.default_rng(0)
    mlp = nn.MLP([4, 8, 3], dtype=np.float64, rng=rng)
    x = rng.normal(size=(5, 4))
    w1, b1, w2, b2 = (p.data for p in mlp.parameters())
    expected = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    out = mlp(x)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"activation": "gelu"}, {"final_activation": "swish"}])
def test_mlp_unknown_activation_raises_value_error_naming_it(kwargs):
    (bad,) = kwargs.values()
    with pytest.raises(ValueError, match=f"unknown activation '{bad}'"):
        nn.MLP([4, 8, 3], **kwargs)


def test_mlp_needs_two_sizes():
    with pytest.raises(ValueError):
        nn.MLP([4])


# ---- state_dict / load_state_dict ------------------------------------------------------------


def test_state_dict_names_values_and_copies():
    model = nn.MLP([4, 8, 3], rng=np.random.default_rng(0))
    before = _snapshot(model)
    sd = model.state_dict()
    assert list(sd) == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    for name, value in sd.items():
        assert isinstance(value, np.ndarray)
        assert np.array_equal(value, before[name])
        assert value.dtype == np.float32
        value[...] = 123.0  # must not reach the model
    _assert_same_params(model, before)


def test_state_dict_is_not_changed_by_later_training_updates():
    model = nn.Linear(3, 2, rng=np.random.default_rng(0))
    sd = model.state_dict()
    saved = {k: v.copy() for k, v in sd.items()}
    model.weight.data += 1.0
    for k in sd:
        assert np.array_equal(sd[k], saved[k])


def test_load_state_dict_round_trip_restores_outputs_exactly():
    x = np.random.default_rng(5).normal(size=(7, 4)).astype(np.float32)
    source = nn.MLP([4, 8, 3], rng=np.random.default_rng(0))
    target = nn.MLP([4, 8, 3], rng=np.random.default_rng(1))
    assert not np.array_equal(source(x).data, target(x).data)
    target_params = target.parameters()
    sd = source.state_dict()
    target.load_state_dict(sd)
    assert np.array_equal(target(x).data, source(x).data)
    # loading copies values into the existing Parameters (optimizers keep working) ...
    assert all(a is b for a, b in zip(target.parameters(), target_params))
    # ... and does not alias the state dict
    for value in sd.values():
        value[...] = 0.0
    assert np.array_equal(target(x).data, source(x).data)


def test_load_state_dict_converts_dtype_to_the_parameters():
    source = nn.Linear(3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    target = nn.Linear(3, 2, dtype=np.float32, rng=np.random.default_rng(1))
    target.load_state_dict(source.state_dict())
    assert target.weight.dtype == np.float32
    np.testing.assert_array_equal(target.weight.data, source.weight.data.astype(np.float32))


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("layers.2.bias"), "missing keys ['layers.2.bias']"),
    (lambda sd: sd.update({"layers.4.weight": np.zeros((3, 3), dtype=np.float32)}), "unexpected keys ['layers.4.weight']"),
], ids=["missing", "unexpected"])
def test_load_state_dict_missing_or_unexpected_key_raises_and_leaves_model_unchanged(edit, message):
    model = nn.MLP([4, 8, 3], rng=np.random.default_rng(0))
    before = _snapshot(model)
    sd = nn.MLP([4, 8, 3], rng=np.random.default_rng(1)).state_dict()
    edit(sd)
    with pytest.raises(KeyError, match=re.escape(message)):
        model.load_state_dict(sd)
    _assert_same_params(model, before)


def test_load_state_dict_wrong_shape_raises_naming_key_and_both_shapes_and_leaves_model_unchanged():
    model = nn.MLP([4, 8, 3], rng=np.random.default_rng(0))
    before = _snapshot(model)
    sd = nn.MLP([4, 8, 3], rng=np.random.default_rng(1)).state_dict()
    # The bad entry comes last, so an implementation that copied as it checked
    # would already have overwritten the first three parameters.
    sd["layers.2.bias"] = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    assert "'layers.2.bias' has shape (4,) in the state dict but (3,) in the model" in str(info.value)
    _assert_same_params(model, before)


def test_load_state_dict_does_not_broadcast_a_scalar():
    model = nn.Linear(3, 2, rng=np.random.default_rng(0))
    before = _snapshot(model)
    sd = model.state_dict()
    sd["bias"] = np.float32(0.0)
    with pytest.raises(ValueError, match="bias"):
        model.load_state_dict(sd)
    _assert_same_params(model, before)

"""The context stack (scg/context.py): every global switch is set through it, says who
set it, and comes back to its previous value however the block ends."""

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import context
from scg.graph import force_estimator


@pytest.fixture(autouse=True)
def _empty_stack():
    """Each test starts and ends with no frame on the stack (a leak would show here)."""
    assert context.frames() == ()
    yield
    assert context.frames() == ()


def test_push_sets_and_pop_restores_and_the_owner_is_named():
    assert context.owner("anomaly") == "default" and context.state.anomaly is False
    outer = context.push("outer", anomaly=True, validate_args=False)
    inner = context.push("inner", anomaly=False)
    assert context.state.anomaly is False and context.owner("anomaly") == "inner"
    assert context.state.validate_args is False and context.owner("validate_args") == "outer"
    assert [f.owner for f in context.frames()] == ["outer", "inner"]
    context.pop(inner)
    assert context.state.anomaly is True and context.owner("anomaly") == "outer"
    context.pop(outer)
    assert context.state.anomaly is False and context.state.validate_args is True  # the default
    assert context.owner("anomaly") == "default"


def test_popping_out_of_order_is_refused_naming_both_owners():
    outer = context.push("outer", anomaly=True)
    inner = context.push("inner", track=True)
    with pytest.raises(RuntimeError, match="'outer' popped out of order.*innermost is 'inner'"):
        context.pop(outer)
    context.pop(inner)
    context.pop(outer)
    with pytest.raises(RuntimeError, match="'outer' popped out of order.*stack is empty"):
        context.pop(outer)


def test_an_unknown_switch_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown switch 'grad'.*grad_enabled"):
        context.push("me", grad=False)
    with pytest.raises(ValueError, match="unknown switch 'grad'"):
        context.set_default("grad", False)
    with pytest.raises(ValueError, match="unknown switch 'grad'"):
        context.switched("me", grad=False)


def test_set_default_under_a_frame_takes_effect_when_the_frame_is_popped():
    frame = context.push("test", validate_args=True)
    try:
        context.set_default("validate_args", False)
        assert context.state.validate_args is True  # the frame still decides
    finally:
        context.pop(frame)
    try:
        assert context.state.validate_args is False
    finally:
        context.set_default("validate_args", True)  # back to the default
    assert context.state.validate_args is True


def test_active_lists_the_values_on_the_stack_innermost_first():
    with context.switched("a", replay={"x": 1}), context.switched("b", anomaly=True), \
            context.switched("c", replay={"x": 2}):
        assert context.active("replay") == [{"x": 2}, {"x": 1}]
        assert context.state.replay == {"x": 2}
    assert context.active("replay") == [] and context.state.replay is None


def test_a_block_that_raises_still_restores_the_switch():
    with pytest.raises(KeyError), scg.no_grad():
        raise KeyError("boom")
    assert scg.is_grad_enabled()


def test_no_grad_enable_grad_and_detect_anomaly_go_through_the_stack():
    with scg.no_grad():
        assert not scg.is_grad_enabled() and context.owner("grad_enabled") == "no_grad"
        with scg.enable_grad():
            assert scg.is_grad_enabled() and context.owner("grad_enabled") == "enable_grad"
            x = scg.tensor(2.0, requires_grad=True)
            assert (x * x).requires_grad
        assert not (x * x).requires_grad
        with scg.detect_anomaly():
            assert context.state.anomaly and context.owner("anomaly") == "detect_anomaly"
    assert scg.is_grad_enabled() and not context.state.anomaly


def test_one_no_grad_object_can_be_entered_twice_and_used_as_a_recursive_decorator():
    off = scg.no_grad()
    with off:
        with off:
            assert len(context.frames()) == 2
        assert not scg.is_grad_enabled()
    assert scg.is_grad_enabled()

    x = scg.tensor(3.0, requires_grad=True)

    @scg.no_grad()
    def power(n):
        assert not scg.is_grad_enabled()
        return x if n == 1 else x * power(n - 1)

    y = power(4)
    assert y.item() == 81.0 and not y.requires_grad and scg.is_grad_enabled()


def test_the_backward_pass_records_only_with_create_graph_and_restores_the_switch():
    x = scg.tensor(3.0, requires_grad=True)
    y = x ** 3
    with scg.no_grad():
        (g,) = scg.grad(y, x, create_graph=True)  # recorded although the caller said no_grad
        assert not scg.is_grad_enabled()
    assert g.item() == 27.0 and g.requires_grad
    (gg,) = scg.grad(g, x)
    assert gg.item() == 18.0 and not gg.requires_grad  # 6x, not recorded
    assert scg.is_grad_enabled()


def test_a_graph_switches_on_tracking_and_nested_graphs_stay_active():
    outer, inner = scg.Graph("outer"), scg.Graph("inner")
    mu = scg.tensor(0.0, requires_grad=True)
    with outer:
        assert scg.graph.current_graph() is outer and context.state.track
        assert context.owner("track") == "Graph 'outer'"
        with inner:
            assert scg.graph.current_graph() is inner and context.owner("graph") == "Graph 'inner'"
            outer.sample("z", D.Normal(mu, 1.0))  # the outer graph is still being built
        assert scg.graph.current_graph() is outer
    assert scg.graph.current_graph() is None and not context.state.track
    assert context.state.on_escape is None
    with pytest.raises(RuntimeError, match="outside an active graph"):
        outer.sample("w", D.Normal(mu, 1.0))


def test_the_innermost_replay_wins_and_the_outer_one_still_counts():
    logits = scg.tensor([0.3, -0.2], requires_grad=True)

    def draw():
        g = scg.Graph()
        with g:
            a = g.sample("a", D.Bernoulli(logits=logits), estimator=scg.ScoreFunction())
            b = g.sample("b", D.Bernoulli(logits=logits), estimator=scg.ScoreFunction())
        return a.data.tolist(), b.data.tolist()

    with scg.replay({"a": np.array([1.0, 1.0]), "b": np.array([0.0, 1.0])}):
        with scg.replay({"a": np.array([0.0, 0.0])}):
            assert draw() == ([0.0, 0.0], [0.0, 1.0])
        assert draw() == ([1.0, 1.0], [0.0, 1.0])


def test_force_estimator_is_a_switch_and_the_innermost_choice_wins():
    mu = scg.tensor(0.0, requires_grad=True)
    with force_estimator(lambda d: scg.ScoreFunction()):
        with force_estimator(lambda d: None):  # None: the model's choice stands
            g = scg.Graph()
            with g:
                z = g.sample("z", D.Normal(mu, 1.0))
        assert isinstance(g.nodes["z"].estimator, scg.Reparam) and z.requires_grad
        g = scg.Graph()
        with g:
            z = g.sample("z", D.Normal(mu, 1.0))
        assert isinstance(g.nodes["z"].estimator, scg.ScoreFunction) and not z.requires_grad
    assert context.state.forced_estimator is None


def test_manual_seed_replaces_the_library_generator():
    rng = scg.manual_seed(123)
    assert context.state.generator is rng is scg.random.resolve()
    expected = np.random.default_rng(123).standard_normal(4)
    np.testing.assert_array_equal(scg.random.resolve().standard_normal(4), expected)
    mine = np.random.default_rng(7)
    assert scg.random.resolve(mine) is mine


def test_set_default_validate_args_is_the_validate_args_switch():
    # (tests/distributions covers the checks themselves; here: the switch and its scope)
    assert context.state.validate_args is True  # on by default, as torch
    with pytest.raises(ValueError, match="outside the support"):
        D.Exponential(1.0).log_prob(-1.0)
    assert D.Exponential(1.0, validate_args=False).log_prob(-1.0).data == -np.inf
    frame = context.push("test", validate_args=False)  # a block can turn it off
    try:
        assert D.Exponential(1.0).log_prob(-1.0).data == -np.inf
    finally:
        context.pop(frame)
    D.Distribution.set_default_validate_args(False)
    try:
        assert context.state.validate_args is False
        assert D.Exponential(1.0).log_prob(-1.0).data == -np.inf
    finally:
        D.Distribution.set_default_validate_args(True)
    assert context.state.validate_args is True
    with pytest.raises(ValueError, match="outside the support"):
        D.Exponential(1.0).log_prob(-1.0)

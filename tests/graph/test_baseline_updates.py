"""Stateful baselines (moving average, NVIL's centre and normaliser) apply their statistics
only in ``update()``: a forgotten update, or a baseline made afresh every step, would leave
the baseline at 0 for ever. Both are reported; measuring a gradient many times is not."""

import gc
import warnings

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg.estimators import score_function


@pytest.fixture(autouse=True)
def _fresh_discard_count(monkeypatch):
    monkeypatch.setattr(score_function, "_DISCARDED", [0, False])


def _train(make_baseline, steps, update):
    logit = scg.tensor(0.2, requires_grad=True)
    opt = scg.optim.SGD([logit], lr=0.1)
    shared = make_baseline()
    baselines = []
    for _ in range(steps):
        baseline = shared or make_baseline(inside=True)
        baselines.append(baseline)
        g = scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=logit), estimator=scg.ScoreFunction(baseline=baseline))
            g.cost("c", (b - 3.0) ** 2)
        opt.zero_grad()
        g.surrogate().backward()
        opt.step()
        if update:
            baseline.update()
        del g, b
        if shared is None:
            baselines.clear()  # a baseline made inside the step dies with it
            gc.collect()
    return shared


def test_reused_baseline_with_updates_warns_nothing_and_moves():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = _train(lambda inside=False: scg.MovingAverageBaseline(0.5), 4, update=True)
    assert b.average.value("b") > 1.0  # the costs are 4 or 9: the average moved off 0


def test_forgotten_update_is_reported():
    with pytest.warns(UserWarning, match="never applied, so this baseline is still 0.*update"):
        _train(lambda inside=False: scg.MovingAverageBaseline(0.5), 3, update=False)


def test_baseline_made_inside_the_step_is_reported():
    def make(inside=False):
        return scg.MovingAverageBaseline(0.5) if inside else None

    with pytest.warns(UserWarning, match="thrown away holding statistics.*once, outside"):
        _train(make, 5, update=False)


def test_learned_baseline_normaliser_forgotten_update_is_reported():
    net = scg.nn.Linear(1, 1)
    with pytest.warns(UserWarning, match="of 'b': the statistic recorded before the last optimiser step was never applied"):
        _train(lambda inside=False: scg.LearnedBaseline(lambda: net(scg.tensor(np.ones((1, 1))))[0, 0],
                                                        normalize=0.9), 3, update=False)


def test_measuring_a_gradient_many_times_without_steps_warns_nothing():
    logit = scg.tensor(0.2, requires_grad=True)
    baseline = scg.MovingAverageBaseline(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(20):
            g = scg.Graph()
            with g:
                b = g.sample("b", D.Bernoulli(logits=logit), estimator=scg.ScoreFunction(baseline=baseline))
                g.cost("c", (b - 3.0) ** 2)
            scg.grad(g.surrogate(), logit)


def test_runs_that_ended_holding_a_last_measurement_warn_nothing_when_collected_late():
    """What a study of several estimators does: each run trains its baseline (updated every
    step), measures a gradient after its last step (a statistic left pending) and is dropped,
    but a reference cycle keeps it until the collector runs, after the next run's steps."""

    def one_run():
        logit = scg.tensor(0.2, requires_grad=True)
        baseline = scg.MovingAverageBaseline(0.5)
        opt = scg.optim.SGD([logit], lr=0.1)
        for _ in range(3):
            g = scg.Graph()
            with g:
                b = g.sample("b", D.Bernoulli(logits=logit), estimator=scg.ScoreFunction(baseline=baseline))
                g.cost("c", (b - 3.0) ** 2)
            opt.zero_grad()
            g.surrogate().backward()
            opt.step()
            baseline.update()
        g = scg.Graph()  # the measurement after training: records, is never applied
        with g:
            b = g.sample("b", D.Bernoulli(logits=logit), estimator=scg.ScoreFunction(baseline=baseline))
            g.cost("c", (b - 3.0) ** 2)
        scg.grad(g.surrogate(), logit)
        cycle = {"baseline": baseline}
        cycle["self"] = cycle  # collected only by the cycle collector, later
        assert baseline.average.pending  # the premise: a statistic is left pending

    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(4):
                one_run()
            gc.collect()  # every earlier run's baseline is finalised now, steps after its last record
            one_run()
    finally:
        gc.enable()
    assert score_function._DISCARDED[0] == 0

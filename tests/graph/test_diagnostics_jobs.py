"""scg.diagnostics on executors, and the exact bias check of a user's own estimator.

gradient_stats cut into seeded chunks gives the same estimates in this process, in worker
processes and on a Dask cluster; scg.executors keeps failed jobs apart; scg.diagnostics.bias
sums p(o) * grad surrogate(o) over every outcome and is checked against gradients written
out by hand here, including a baseline that is biased by construction."""

import contextlib
import functools
import itertools

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg import executors
from scg.estimators.score_function import Baseline

THETA = np.array([0.3, -0.4])
TARGET = 0.7


def coins(theta, estimator=None, n=None):
    """Two independent coins b ~ Bernoulli(sigmoid(theta)); cost sum over coins (and draws)
    of 3 (b - 0.7)^2, plus b_0 b_1 per draw."""
    g = scg.Graph()
    with g:
        b = g.sample("b", D.Bernoulli(logits=theta), estimator=estimator or scg.ScoreFunction(), n=n)
        g.cost("c", 3.0 * (b - TARGET) ** 2)
        g.cost("pair", b[..., 0] * b[..., 1])
    return g


def exact_by_hand(theta):
    """d/dtheta of E[3 (b0 - .7)^2 + 3 (b1 - .7)^2 + b0 b1], with p = sigmoid(theta):
    E = sum_i 3 [p_i .09 + (1 - p_i) .49] + p0 p1, dp/dtheta = p (1 - p)."""
    p = 1 / (1 + np.exp(-theta))
    d = p * (1 - p)
    return np.array([d[0] * (3 * (0.09 - 0.49) + p[1]), d[1] * (3 * (0.09 - 0.49) + p[0])])


def expected_estimate_by_hand(theta, baseline_of, n):
    """E over every joint outcome of n draws of two coins of the score-function estimate
    (1/n) sum_k d log p(b_k) * (f(b_k) - baseline_of(k, costs)), enumerated here."""
    p = 1 / (1 + np.exp(-theta))
    total = np.zeros(2)
    for draws in itertools.product(itertools.product((0, 1), repeat=2), repeat=n):
        b = np.array(draws, dtype=float)  # (n, 2)
        prob = np.prod(np.where(b == 1, p, 1 - p))
        costs = (3 * (b - TARGET) ** 2).sum(axis=1) + b[:, 0] * b[:, 1]  # (n,)
        score = b - p  # d log p(b) / d theta per coin
        est = sum(score[k] * (costs[k] - baseline_of(k, costs)) for k in range(n)) / n
        total += prob * est
    return total


class MeanIncludingSelf(Baseline):
    """A baseline users write by mistake: the mean cost of all n draws, the draw itself included."""

    def __call__(self, node, signal):
        q = np.broadcast_to(signal.q, (node.n,) + signal.q.shape[1:])
        return q.mean(axis=0, keepdims=True), None


@pytest.mark.parametrize("estimator, n, baseline_of", [
    (lambda: scg.ScoreFunction(), None, lambda k, c: 0.0),
    (lambda: scg.ScoreFunction(scg.LeaveOneOutBaseline()), 3, lambda k, c: (c.sum() - c[k]) / (len(c) - 1)),
    (lambda: scg.ScoreFunction(MeanIncludingSelf()), 3, lambda k, c: c.mean()),
    (lambda: scg.ScoreFunction(scg.MovingAverageBaseline(0.9)), None, lambda k, c: 0.0),  # no update yet: 0
])
def test_bias_is_the_exact_expectation_of_the_estimator(estimator, n, baseline_of):
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    result = scg.diagnostics.bias(lambda: coins(theta, estimator(), n), [theta])
    np.testing.assert_allclose(result.exact[0], exact_by_hand(THETA), rtol=1e-12)
    np.testing.assert_allclose(result.expected[0], expected_estimate_by_hand(THETA, baseline_of, n or 1),
                               rtol=1e-12, atol=1e-15)


def test_a_baseline_that_sees_its_own_draw_is_reported_biased():
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    unbiased = scg.diagnostics.bias(lambda: coins(theta, scg.ScoreFunction(scg.LeaveOneOutBaseline()), 3), [theta])
    assert unbiased.unbiased() and unbiased.max_abs < 1e-14
    biased = scg.diagnostics.bias(lambda: coins(theta, scg.ScoreFunction(MeanIncludingSelf()), 3), [theta])
    assert not biased.unbiased()
    # q_k - mean(q) = (K-1)/K (q_k - mean of the others): the estimate shrinks by (K-1)/K
    np.testing.assert_allclose(biased.expected[0], 2 / 3 * exact_by_hand(THETA), rtol=1e-12)
    assert biased.max_abs == pytest.approx(np.abs(exact_by_hand(THETA) / 3).max(), rel=1e-12)
    assert "max |bias|" in repr(biased)


def test_enumerated_nodes_are_summed_as_in_training():
    theta = scg.tensor(THETA.copy(), requires_grad=True)

    def build():
        g = scg.Graph()
        with g:
            a = g.sample("a", D.Bernoulli(logits=theta[0]), estimator=scg.Enumerate())
            b = g.sample("b", D.Bernoulli(logits=theta[1] + a), estimator=scg.ScoreFunction())
            g.cost("c", (a + 2 * b - 1.5) ** 2)
        return g

    result = scg.diagnostics.bias(build, [theta])
    # by hand: E = sum_a p(a) sum_b p(b|a) (a + 2b - 1.5)^2, differentiated by central differences
    def expectation(t):
        pa = 1 / (1 + np.exp(-t[0]))
        total = 0.0
        for a in (0, 1):
            pb = 1 / (1 + np.exp(-(t[1] + a)))
            total += (pa if a else 1 - pa) * (pb * (a + 0.5) ** 2 + (1 - pb) * (a - 1.5) ** 2)
        return total
    h = 1e-6
    fd = np.array([(expectation(THETA + h * e) - expectation(THETA - h * e)) / (2 * h) for e in np.eye(2)])
    np.testing.assert_allclose(result.exact[0], fd, rtol=1e-7)
    np.testing.assert_allclose(result.expected[0], fd, rtol=1e-7)


@pytest.mark.parametrize("make, fragment", [
    (lambda t: (D.Normal(t, 1.0), None, None), "its value is continuous (Normal"),
    (lambda t: (D.Bernoulli(logits=t), scg.DisARM(), 2), "antithetic pairs"),
    (lambda t: (D.Bernoulli(logits=t), scg.GumbelSoftmax(0.5), None), "its value is continuous"),
])
def test_nodes_that_cannot_be_replayed_are_refused_by_name(make, fragment):
    theta = scg.tensor(THETA.copy(), requires_grad=True)

    def build():
        dist, estimator, n = make(theta)
        g = scg.Graph()
        with g:
            z = g.sample("z", dist, estimator=estimator, n=n)
            g.cost("c", (z ** 2).sum())
        return g

    with pytest.raises(ValueError, match=r"bias: node 'z' cannot be replayed.*" + fragment.replace("(", r"\(")):
        scg.diagnostics.bias(build, [theta])


# ---- gradient_stats in seeded chunks, on any executor ------------------------------------------


@pytest.fixture(scope="module")
def pool():
    """``executors.executor(2)``, shared by this module's tests: starting its two worker
    processes costs more than every job they run here."""
    with executors.executor(2) as two_processes:
        yield two_processes


def _estimates(executor=None, seed=5, chunks=None):
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    build = functools.partial(coins, theta)  # picklable: theta travels with it, once
    return scg.diagnostics.gradient_stats(build, [theta], 30, seed=seed, executor=executor, chunks=chunks)


def test_seeded_chunks_are_the_same_in_process_in_processes_and_on_dask(pool):
    reference = _estimates()
    assert reference.samples[0].shape == (30, 2) and np.unique(reference.samples[0], axis=0).shape[0] > 1
    np.testing.assert_array_equal(_estimates(pool).samples[0], reference.samples[0])
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with executors.executor(scheduler=cluster.scheduler_address) as dask:
            np.testing.assert_array_equal(_estimates(dask).samples[0], reference.samples[0])
    assert not np.array_equal(_estimates(seed=6).samples[0], reference.samples[0])


def test_seeded_chunks_are_independent_and_unbiased():
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    stats = scg.diagnostics.gradient_stats(functools.partial(coins, theta), [theta], 4000, seed=1, chunks=8)
    parts = np.split(stats.samples[0], 8)
    assert all(not np.array_equal(parts[0], p) for p in parts[1:])
    z = (stats.mean[0] - exact_by_hand(THETA)) / stats.stderr[0]
    assert np.all(np.abs(z) < 4), z


def test_a_build_with_its_own_generator_is_refused_in_chunks():
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    rng = np.random.default_rng(0)

    def build():
        g = scg.Graph(rng=rng)
        with g:
            b = g.sample("b", D.Bernoulli(logits=theta), estimator=scg.ScoreFunction())
            g.cost("c", 3.0 * (b - TARGET) ** 2)
        return g

    with pytest.raises(ValueError, match="generator of its own"):
        scg.diagnostics.gradient_stats(build, [theta], 10, seed=0)
    assert scg.diagnostics.gradient_stats(build, [theta], 10).n == 10  # unchunked, as before


def _maybe_fail(x):
    if x == 2:
        raise ZeroDivisionError("job two")
    return x * x


@pytest.mark.parametrize("workers", [0, 2])
def test_run_jobs_keeps_the_others_when_one_fails(workers, request, capsys):
    seen = []
    with contextlib.nullcontext(request.getfixturevalue("pool")) if workers else executors.executor(0) as pool:
        results, failures = executors.run_jobs(_maybe_fail, [(("job", i), (i,)) for i in range(4)], pool,
                                               on_done=lambda k, r: seen.append(k), progress=False)
    assert results == {("job", 0): 0, ("job", 1): 1, ("job", 3): 9}
    assert list(failures) == [("job", 2)] and failures[("job", 2)].error == "ZeroDivisionError: job two"
    assert sorted(seen) == [("job", 0), ("job", 1), ("job", 3)]
    assert "job ('job', 2) failed: ZeroDivisionError: job two" in capsys.readouterr().err


def test_seeds_do_not_depend_on_how_many_jobs_there_are():
    assert executors.spawn_seeds(3, 5)[:2] == executors.spawn_seeds(3, 2)
    assert len(set(executors.spawn_seeds(3, 5))) == 5 and executors.spawn_seeds(4, 1) != executors.spawn_seeds(3, 1)


def test_bad_executor_settings_are_refused():
    with pytest.raises(ValueError, match="workers must be 0"):
        with executors.executor(-1):
            pass
    with pytest.raises(ValueError, match="every job needs its own key"):
        executors.run_jobs(_maybe_fail, [("a", (1,)), ("a", (2,))], executors.InProcess(), progress=False)
    with pytest.raises(ValueError, match="chunks must be between 1 and n=30"):
        _estimates(chunks=31)


def test_measurements_leave_a_stateful_baseline_alone():
    """bias() and gradient_stats() between a training step's surrogate and its update() must
    not replace the statistic that step recorded."""
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    average = scg.MovingAverageBaseline(0.9)

    def build(replay=None):
        g = scg.Graph(replay=replay) if replay else scg.Graph()
        with g:
            b = g.sample("b", D.Bernoulli(logits=theta), estimator=scg.ScoreFunction(average))
            g.cost("c", 3.0 * ((b - TARGET) ** 2).sum())
        return g

    build({"b": np.array([1.0, 1.0])}).surrogate().backward()  # the step's cost: 3 (0.09 + 0.09)
    scg.diagnostics.bias(build, [theta])
    scg.diagnostics.gradient_stats(build, [theta], 5)
    scg.diagnostics.gradient_stats(build, [theta], 4, seed=1)
    average.update()
    assert average.average.value("b") == pytest.approx(0.54)  # bias-corrected: the one statistic


def _module_level_theta_build():
    return coins(_MODULE_THETA)


_MODULE_THETA = scg.tensor(THETA.copy(), requires_grad=True)


def test_parameters_the_graph_does_not_reach_are_refused_in_chunks(pool):
    other = scg.tensor(THETA.copy(), requires_grad=True)  # what a worker's unpickled params would be
    with pytest.raises(ValueError, match=r"params \[0\] do not reach the loss.*functools.partial"):
        scg.diagnostics.gradient_stats(_module_level_theta_build, [other], 10, seed=0)
    # the module-level parameter in another process: refused, not zeros
    with pytest.raises(ValueError, match="do not reach the loss"):
        scg.diagnostics.gradient_stats(_module_level_theta_build, [_MODULE_THETA], 10, seed=0, executor=pool)


def test_a_lambda_sent_to_a_worker_is_refused_with_the_way_out(pool):
    theta = scg.tensor(THETA.copy(), requires_grad=True)
    with pytest.raises(TypeError, match="must pickle: use a function defined at module level"):
        scg.diagnostics.gradient_stats(lambda: coins(theta), [theta], 10, seed=0, executor=pool)
    assert _estimates(pool).n == 30  # and the workers are still there for the next jobs

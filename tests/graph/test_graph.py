"""The graph builder and the surrogate compiler, on continuous models with known
gradients. Statistical checks use fixed seeds and 4 standard errors of the mean."""

from contextlib import nullcontext

import numpy as np
import pytest

import scg
import scg.distributions as D
from scg.diagnostics import gradient_stats

from replicas import REP, copies, replica_stats, warm_up


class NonReparamNormal(D.Normal):
    """Normal without a pathwise sample: forces the score-function path."""

    has_rsample = False

    def sample(self, sample_shape=(), rng=None):
        return scg.Tensor(D.Normal.rsample(self, sample_shape, rng=rng).data)

    def rsample(self, sample_shape=(), rng=None):
        return D.Distribution.rsample(self, sample_shape, rng=rng)


def assert_close_stat(stats, exact, z=4.0):
    for m, se, e in zip(stats.mean, stats.stderr, exact):
        assert np.all(np.abs(m - e) <= z * se + 1e-12), (m, se, e)


def quadratic_graph(mu, sigma, estimator, n=None):
    """With mu, sigma of shape (R,): R independent replicas in a plate (see replicas.py)."""
    def build():
        estimator.update()  # the previous build's baseline statistics, as after a step
        g = scg.Graph()
        with g:
            with g.plate(REP, mu.shape[0]) if mu.ndim else nullcontext():
                z = g.sample("z", D.Normal(mu, sigma), estimator=estimator, n=n)
                g.cost("f", z * z)
        return g

    return build


def replicated(r, *values):
    return [scg.tensor(copies(v, r), requires_grad=True) for v in values]


@pytest.mark.parametrize(
    "make_estimator, n",
    [
        (lambda: scg.Reparam(), None),
        (lambda: scg.ScoreFunction(), None),
        (lambda: scg.ScoreFunction(baseline=scg.MovingAverageBaseline(0.9)), None),
        (lambda: scg.ScoreFunction(baseline=scg.LeaveOneOutBaseline()), 4),
        (lambda: scg.ScoreFunction(), 4),
    ],
)
def test_gradient_of_expected_square(make_estimator, n):
    # E_{z ~ N(mu, sigma)}[z^2] = mu^2 + sigma^2: gradients 2 mu and 2 sigma.
    scg.manual_seed(1)
    mu, sigma = replicated(1500, 1.0, 0.5)  # 2 graphs x 1500 replicas = 3000 estimates
    est = make_estimator()
    build = quadratic_graph(mu, sigma, est, n)
    if isinstance(getattr(est, "baseline", None), scg.MovingAverageBaseline):
        warm_up(build)  # then measured fixed
        assert est.baseline.average.value("z") > 0.5  # E[z^2] = 1.25: a baseline that is not 0
    stats = replica_stats(build, [mu, sigma])
    assert_close_stat(stats, [2.0, 1.0])


def test_learned_baseline_is_trained_and_unbiased():
    scg.manual_seed(2)
    mu = scg.tensor(1.0, requires_grad=True)
    sigma = scg.tensor(0.5, requires_grad=True)
    b = scg.nn.Parameter(np.zeros(()))
    est = scg.ScoreFunction(baseline=scg.LearnedBaseline(lambda: b * 1.0, center=None))
    opt = scg.optim.SGD([b], lr=0.05)
    for _ in range(300):  # train only the baseline toward E[z^2] = 1.25
        g = quadratic_graph(mu, sigma, est)()
        opt.zero_grad()
        g.surrogate().backward()
        opt.step()
    assert abs(b.item() - 1.25) < 0.15
    mu, sigma = replicated(1500, 1.0, 0.5)  # 2 graphs x 1500 replicas = 3000 estimates
    stats = replica_stats(quadratic_graph(mu, sigma, est), [mu, sigma])
    assert_close_stat(stats, [2.0, 1.0])
    plain = replica_stats(quadratic_graph(mu, sigma, scg.ScoreFunction()), [mu, sigma])
    assert stats.variance[0] < plain.variance[0]


def test_surrogate_value_is_the_objective():
    scg.manual_seed(0)
    mu = scg.tensor(0.3, requires_grad=True)
    g = quadratic_graph(mu, 1.0, scg.ScoreFunction())()
    z = g.nodes["z"].value.data
    assert np.isclose(g.objective().item(), float(z**2))
    assert np.isclose(g.surrogate().item(), float(z**2))
    assert np.isclose(g.dice().item(), float(z**2))


def test_sample_axis_averages_costs():
    scg.manual_seed(0)
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(0.0, 1.0), n=5)
        g.cost("f", z * z)
    assert z.shape == (5,)
    assert np.isclose(g.objective().item(), float(np.mean(z.data**2)))


def two_stage(theta):
    """x -> z1 ~ N(x, 1) -> z2 ~ N(z1 + theta, 1); costs c1 = 5 (z1 - 2)^2 (stage one) and
    c2 = (z2 - 1)^2. theta only moves stage two: z2 ~ N(x + theta, 2), so the gradient
    of E[c1 + c2] is 2 (x + theta - 1). Without Rao-Blackwellization z2's score term is
    also weighted by c1, which it cannot influence: pure noise."""
    x = 0.2

    def build():
        g = scg.Graph()
        with g:
            with g.plate(REP, theta.shape[0]) if theta.ndim else nullcontext():
                z1 = g.sample("z1", NonReparamNormal(x + 0 * theta.data, 1.0))
                z2 = g.sample("z2", NonReparamNormal(z1 + theta, 1.0))
                g.cost("c1", 5.0 * (z1 - 2.0) ** 2)
                g.cost("c2", (z2 - 1.0) ** 2)
        return g

    return build


def test_rao_blackwellization_same_mean_lower_variance():
    scg.manual_seed(3)
    theta = scg.tensor(0.7, requires_grad=True)
    exact = 2 * (0.2 + 0.7 - 1)
    # without Rao-Blackwellization every score term is weighted by the total cost of the
    # graph, so replicas in a plate would credit each other's costs: one graph per run
    plain = gradient_stats(two_stage(theta), [theta], 4000,
                           objective=lambda g: g.surrogate(rao_blackwellize=False))
    (thetas,) = replicated(2000, 0.7)  # 2 graphs x 2000 replicas = 4000 estimates
    rb = replica_stats(two_stage(thetas), [thetas])
    assert_close_stat(rb, [exact])
    assert_close_stat(plain, [exact])
    # The stage-one cost no longer rides on z2's score term: a large reduction.
    assert rb.variance[0] < 0.2 * plain.variance[0]


def test_score_term_of_stage_two_excludes_stage_one_cost():
    scg.manual_seed(4)
    theta = scg.tensor(0.7, requires_grad=True)
    g = two_stage(theta)()
    q = g.downstream_costs()
    c1 = g.nodes["c1"].value.item()
    c2 = g.nodes["c2"].value.item()
    assert np.isclose(float(q["z2"]), c2)
    assert np.isclose(float(q["z1"]), c1 + c2)


def test_plate_gives_each_datapoint_its_own_cost():
    scg.manual_seed(5)
    theta0 = np.array([0.1, -0.4, 0.8])

    def build(use_plate, theta):
        def b():
            g = scg.Graph()
            with g:
                with g.plate(REP, theta.shape[0]) if theta.ndim == 2 else nullcontext():
                    if use_plate:
                        with g.plate("data", 3):
                            z = g.sample("z", NonReparamNormal(theta, 1.0))
                            g.cost("f", z * z)
                    else:
                        z = g.sample("z", NonReparamNormal(theta, 1.0))
                        g.cost("f", z * z)
            return g

        return b

    exact = 2 * theta0
    (thetas,) = replicated(1500, theta0)  # (R, 3): 2 graphs x 1500 replicas = 3000 estimates
    plated = replica_stats(build(True, thetas), [thetas])
    flat = replica_stats(build(False, thetas), [thetas])
    assert_close_stat(plated, [exact])
    assert_close_stat(flat, [exact])
    assert np.all(plated.variance[0] < 0.8 * flat.variance[0])
    g = build(True, scg.tensor(theta0.copy(), requires_grad=True))()
    z = g.nodes["z"].value.data
    np.testing.assert_allclose(g.downstream_costs()["z"], z**2)


def test_dice_second_derivative_of_gaussian_expectation():
    # E_{z ~ N(theta, 1)}[z^2] = theta^2 + 1: second derivative 2 (via score function).
    scg.manual_seed(6)
    second = []
    for _ in range(2):  # 2 graphs x 2000 independent replicas (replicas.py) = 4000 estimates
        (theta,) = replicated(2000, 0.5)
        g = scg.Graph()
        with g:
            with g.plate(REP, 2000):
                z = g.sample("z", NonReparamNormal(theta, 1.0))
                g.cost("f", z * z)
        (d1,) = scg.grad(g.dice(), [theta], create_graph=True)  # (R,): replica r's gradient
        # replica r's gradient depends on its own theta_r only: the gradient of the sum is
        # every replica's own second derivative
        (d2,) = scg.grad(d1.sum(), [theta])
        second.append(d2.data)
    second = np.concatenate(second)
    assert abs(second.mean() - 2.0) <= 4 * second.std(ddof=1) / np.sqrt(len(second))


# ---- bad input -----------------------------------------------------------------------


def test_duplicate_name_is_rejected():
    g = scg.Graph()
    with g:
        g.sample("z", D.Normal(0.0, 1.0))
        with pytest.raises(ValueError, match="'z' already exists"):
            g.sample("z", D.Normal(0.0, 1.0))
        with pytest.raises(ValueError, match="'z' already exists"):
            g.cost("z", scg.tensor(1.0))


def test_sample_outside_active_graph():
    g = scg.Graph()
    with pytest.raises(RuntimeError, match="outside an active graph"):
        g.sample("z", D.Normal(0.0, 1.0))
    with pytest.raises(RuntimeError, match="outside an active graph"):
        g.cost("f", scg.tensor(1.0))


def test_cost_must_be_tensor_or_array():
    g = scg.Graph()
    with g:
        with pytest.raises(TypeError, match="cost 'f' must be a Tensor or a numpy array, got list"):
            g.cost("f", [1.0, 2.0])
        with pytest.raises(TypeError, match="cost 'g' must be a Tensor or a numpy array, got str"):
            g.cost("g", "high")


def test_reparam_without_rsample_names_alternatives():
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match=r"Reparam for 'z'.*NonReparamNormal.*ScoreFunction"):
            g.sample("z", NonReparamNormal(0.0, 1.0), estimator=scg.Reparam())


@pytest.mark.parametrize("n", [None, 1])
def test_leave_one_out_needs_two_samples(n):
    g = scg.Graph()
    with g:
        with pytest.raises(ValueError, match="needs n >= 2"):
            g.sample("z", D.Normal(0.0, 1.0), estimator=scg.ScoreFunction(scg.LeaveOneOutBaseline()), n=n)


def test_leave_one_out_rejects_costs_that_pool_the_samples():
    g = scg.Graph()
    with g:
        z = g.sample("z", D.Normal(0.0, 1.0), estimator=scg.ScoreFunction(scg.LeaveOneOutBaseline()), n=4)
        g.cost("f", scg.logsumexp(z, axis=0))
    with pytest.raises(ValueError, match="do not keep the sample axis"):
        g.surrogate()


def test_plate_size_mismatch_is_explained():
    g = scg.Graph()
    with g:
        with g.plate("data", 4):
            with pytest.raises(ValueError, match="inside plate 'data' of size 4"):
                g.sample("z", D.Normal(np.zeros(3), 1.0))


def test_graph_without_costs():
    g = scg.Graph()
    with g:
        g.sample("z", D.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="no costs"):
        g.surrogate()

"""The optimizers' update split into row blocks on worker threads (scg/optim.py) must give
exactly the plain loop's result, cover every element once, and keep the shares even."""

import numpy as np
import pytest

import scg
from scg import optim


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


def test_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "3")
    assert optim.threads() == 3
    monkeypatch.delenv("SCG_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert optim.threads() == 1

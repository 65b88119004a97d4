"""scg/parallel.py: work split over threads must give exactly the one-thread result,
cover every row once, and report a worker's error."""

import numpy as np
import pytest

import scg
from scg import parallel


@pytest.mark.parametrize("shape", [(300, 784), (70_000,), (3, 40_000), (1, 100_000)])
@pytest.mark.parametrize("fn", [scg.softplus, scg.sigmoid])
def test_threaded_elementwise_is_bit_for_bit_the_single_thread_result(monkeypatch, shape, fn):
    x = (np.random.default_rng(0).standard_normal(shape) * 30).astype(np.float32)
    outs = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("SCG_NUM_THREADS", n)
        outs.append(fn(scg.Tensor(x)).data)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_rows_covers_every_row_once(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "3")
    x = np.zeros((100, 1000))
    seen = []

    def f(a, out):
        seen.append(len(a))
        out += 1

    out = parallel.rows(f, x, np.zeros_like(x))
    assert (out == 1).all() and sorted(seen) == [33, 33, 34]


def test_a_worker_error_is_raised_in_the_caller(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "2")

    def boom():
        raise ValueError("worker failed")

    with pytest.raises(ValueError, match="worker failed"):
        parallel.run([lambda: None, boom])


def test_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("SCG_NUM_THREADS", "3")
    assert parallel.threads() == 3
    monkeypatch.delenv("SCG_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert parallel.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert 1 <= parallel.threads() <= 2

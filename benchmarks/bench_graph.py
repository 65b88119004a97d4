"""Compile time of the surrogate and of the DiCE objective on chains and trees of
score-function nodes: it must grow linearly with the graph.

A chain: z_i ~ Normal(z_{i-1}, 1) with a cost z_i^2 on every node; a tree: node i's
parent is node (i-1)//2. Every node uses the score-function estimator, so every
node needs the sum of the costs downstream of it (the Rao-Blackwellized credit)
and every cost the sum of the log-probs upstream of it (DiCE). For a 10x larger
graph a linear compiler takes about 10x as long, a quadratic one about 100x.
tests/graph/test_compiler.py runs this at 500 and 5,000 nodes and requires < 25x.

Usage: python benchmarks/bench_graph.py [--sizes 1000 10000] [--repeats 3]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import scg  # noqa: E402
import scg.distributions as D  # noqa: E402


def build(shape, size, theta):
    """A chain or a binary tree of ``size`` score-function Normal nodes, a cost on each."""
    est = scg.ScoreFunction()
    g = scg.Graph()
    with g:
        values = []
        for i in range(size):
            loc = theta if i == 0 else values[i - 1 if shape == "chain" else (i - 1) // 2]
            z = g.sample(f"z{i}", D.Normal(loc, 1.0), estimator=est)
            values.append(z)
            g.cost(f"c{i}", z * z)
    return g


def measure(shape, size, repeats):
    """Median seconds of (build, surrogate(), dice(), backward of the surrogate)."""
    theta = scg.tensor(0.5, requires_grad=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        g = build(shape, size, theta)
        t1 = time.perf_counter()
        loss = g.surrogate()
        t2 = time.perf_counter()
        g.dice()
        t3 = time.perf_counter()
        scg.grad(loss, [theta])
        t4 = time.perf_counter()
        times.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    return np.median(np.array(times), axis=0)


def compile_times(shape, size, repeats):
    """Median seconds of g.surrogate() and g.dice() on one graph of ``size`` nodes, built once
    (building is most of the cost and is not what the ratios below are about)."""
    g = build(shape, size, scg.tensor(0.5, requires_grad=True))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        g.surrogate()
        t1 = time.perf_counter()
        g.dice()
        t2 = time.perf_counter()
        times.append((t1 - t0, t2 - t1))
    return np.median(np.array(times), axis=0)


def ratios(small, large, repeats=3):
    """{(shape, "surrogate"|"dice"): (compile(large) / compile(small), small s, large s)}
    (tests/graph/test_compiler.py guards them)."""
    out = {}
    for shape in ("chain", "tree"):
        a, b = compile_times(shape, small, repeats), compile_times(shape, large, repeats)
        out[(shape, "surrogate")] = (b[0] / a[0], a[0], b[0])
        out[(shape, "dice")] = (b[1] / a[1], a[1], b[1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scg.manual_seed(0)
    small, large = args.sizes
    print(f"{'graph':6s} {'nodes':>6s} {'build s':>9s} {'surrogate s':>12s} {'dice s':>9s} {'backward s':>11s}")
    for shape in ("chain", "tree"):
        res = {}
        for size in (small, large):
            res[size] = measure(shape, size, args.repeats)
            b, s, d, bw = res[size]
            print(f"{shape:6s} {size:6d} {b:9.3f} {s:12.4f} {d:9.4f} {bw:11.3f}")
        for k, name in ((1, "surrogate"), (2, "dice")):
            r = res[large][k] / res[small][k]
            print(f"{shape}: {name} compile({large:,}) / compile({small:,}) = {r:.1f}"
                  f"  (linear ~{large / small:.0f}, quadratic ~{(large / small) ** 2:.0f})")


if __name__ == "__main__":
    main()

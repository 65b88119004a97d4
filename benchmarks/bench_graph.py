"""Time to build and compile surrogates for chains and trees of stochastic nodes.

A chain: z_i ~ Normal(z_{i-1}, 1) with a cost z_i^2 on every node; a tree: node i's
parent is node (i-1)//2. Every node uses the score-function estimator, so every
node needs the sum of the costs downstream of it (the Rao-Blackwellized credit).
Target: 10,000 nodes compile in at most 15x the time of 1,000.

Usage: python benchmarks/bench_graph.py [--sizes 100 1000 10000] [--repeats 3]
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
    est = scg.ScoreFunction()
    g = scg.Graph()
    with g:
        values = []
        for i in range(size):
            if i == 0:
                loc = theta
            else:
                loc = values[i - 1 if shape == "chain" else (i - 1) // 2]
            z = g.sample(f"z{i}", D.Normal(loc, 1.0), estimator=est)
            values.append(z)
            g.cost(f"c{i}", z * z)
    return g


def measure(shape, size, repeats):
    theta = scg.tensor(0.5, requires_grad=True)
    t_build, t_compile, t_backward = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        g = build(shape, size, theta)
        t1 = time.perf_counter()
        loss = g.surrogate()
        t2 = time.perf_counter()
        scg.grad(loss, [theta])
        t3 = time.perf_counter()
        t_build.append(t1 - t0)
        t_compile.append(t2 - t1)
        t_backward.append(t3 - t2)
    return np.median(t_build), np.median(t_compile), np.median(t_backward)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scg.manual_seed(0)
    print(f"{'graph':6s} {'nodes':>6s} {'build s':>9s} {'compile s':>10s} {'backward s':>11s}")
    for shape in ("chain", "tree"):
        compile_times = {}
        for size in args.sizes:
            b, c, bw = measure(shape, size, args.repeats)
            compile_times[size] = c
            print(f"{shape:6s} {size:6d} {b:9.3f} {c:10.4f} {bw:11.3f}")
        if 1000 in compile_times and 10000 in compile_times:
            r = compile_times[10000] / compile_times[1000]
            print(f"{shape}: compile(10,000) / compile(1,000) = {r:.1f}  (target <= 15)")


if __name__ == "__main__":
    main()

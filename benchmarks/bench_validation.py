"""What validation on by default (as torch.distributions) costs the VAE step: the same step
with ``Distribution.set_default_validate_args`` True and False, eager and traced, timed in
one process in alternating rounds (medians over rounds).

Usage: python benchmarks/bench_validation.py [--batch 128] [--rounds 5] [--seconds 1.5]
"""

import argparse
import statistics
import time

import numpy as np

import scg
from models import vae
from scg.distributions import Distribution


def make_step(batch, traced, seed=0):
    rng = np.random.default_rng(seed)
    model = vae.VAE(hidden=400, latent=20, rng=rng)
    opt = scg.optim.Adam(model.parameters(), lr=1e-3)
    x = (rng.random((batch, 784)) < 0.3).astype(np.float32)

    def step(xb):
        g = vae.build_graph(model, xb, rng=rng)
        opt.zero_grad()
        loss = g.surrogate()
        loss.backward()
        opt.step()
        return loss

    fn = scg.trace(step) if traced else step
    return lambda: fn(x)


def per_step(run, seconds):
    for _ in range(3):
        run()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run()
        n += 1
    return (time.perf_counter() - t0) / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5)
    args = ap.parse_args()
    times = {}
    for r in range(args.rounds):
        order = [(v, t) for v in (True, False) for t in (False, True)]
        for validate, traced in (order if r % 2 == 0 else order[::-1]):
            Distribution.set_default_validate_args(validate)
            run = make_step(args.batch, traced)  # built under the setting: a traced step records it
            times.setdefault((validate, traced), []).append(per_step(run, args.seconds))
    Distribution.set_default_validate_args(True)
    print(f"VAE 784-400-20 step, batch {args.batch}, {args.rounds} alternating rounds of >= {args.seconds} s; "
          f"median [min-max] ms/step")
    for traced in (False, True):
        on, off = (statistics.median(times[(v, traced)]) for v in (True, False))
        spread = {v: (min(times[(v, traced)]), max(times[(v, traced)])) for v in (True, False)}
        print(f"{'traced' if traced else 'eager ':7s} validation on {on:6.2f} [{spread[True][0]:.2f}-{spread[True][1]:.2f}]"
              f"  off {off:6.2f} [{spread[False][0]:.2f}-{spread[False][1]:.2f}]  on/off {on / off:.3f}")


if __name__ == "__main__":
    main()

"""Where the traced VAE step spends its time: every replayed call of ``scg.trace``'s program
timed, summed by kind and name (a matmul, softplus, the optimizer's step, ...), per step.
Timing each call adds ~1 us per call; compare shares, not totals, with bench_vae.py.

Usage: python benchmarks/profile_traced_step.py [--batch 128] [--steps 200]
"""

import argparse
import collections
import gc
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vae  # noqa: E402

T = importlib.import_module("scg.trace")  # the module (scg.trace is the function)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--calls", type=int, default=0, help="also list the N slowest single calls, with their sites")
    args = ap.parse_args()
    step = bench_vae.scg_factory(args.batch, traced=True)
    for _ in range(120):  # past the recordings and the audit at replay 100, which records anew
        step()
    total, count = collections.defaultdict(float), collections.Counter()
    single = collections.defaultdict(float)  # (program, index, name, site) -> seconds

    def timed(call, s, where):
        key = f"{s.kind} {s.name}"

        def run():
            t = time.perf_counter()
            call()
            dt = time.perf_counter() - t
            total[key] += dt
            count[key] += 1
            single[where] += dt
        return run

    for k, program in enumerate([o for o in gc.get_objects() if isinstance(o, T._Program)]):
        program.calls[:] = [timed(c, s, (k, i, f"{s.kind} {s.name}", s.site))
                            for i, (c, s) in enumerate(zip(list(program.calls), program.call_steps))]
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - t) / args.steps
    inside = sum(total.values()) / args.steps
    print(f"batch {args.batch}: {per_step * 1e3:.2f} ms a step, {inside * 1e3:.2f} ms in replayed calls")
    for key, v in sorted(total.items(), key=lambda kv: -kv[1]):
        if v / args.steps >= 5e-6:
            print(f"{v / args.steps * 1e6:9.1f} us  {count[key] // args.steps:3d} calls  {key}")
    if args.calls:
        print(f"the {args.calls} slowest calls:")
        for (k, i, name, site), v in sorted(single.items(), key=lambda kv: -kv[1])[:args.calls]:
            print(f"{v / args.steps * 1e6:9.1f} us  #{i:<4d} {name:28s} {site}")


if __name__ == "__main__":
    main()

"""The VAE training step of two checkouts of scg, side by side (one process alive at a
time, order rotated, medians over rounds; see harness.py): what a change cost or saved.

Usage: python benchmarks/bench_versions.py OLD_CHECKOUT NEW_CHECKOUT [--batch 128] [--rounds 7]
(e.g. a `git worktree add /tmp/old <commit>` of the commit before the change, and this one).
Each worker imports scg, models and benchmarks/bench_vae.py from its own checkout.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class _Factories(dict):
    """Any checkout path names a factory: the step of that checkout's bench_vae."""

    def __missing__(self, path):
        def factory(batch_size=128):
            sys.path.insert(0, os.path.join(path, "benchmarks"))
            sys.path.insert(0, path)
            import bench_vae  # from ``path``: it puts ``path`` first on sys.path too
            import scg

            if not os.path.abspath(scg.__file__).startswith(os.path.abspath(path)):
                raise RuntimeError(f"scg imported from {scg.__file__}, not from {path}")
            return bench_vae.scg_factory(batch_size)

        return factory


def main():
    harness.serve(_Factories())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.5)
    args = ap.parse_args()
    names = [os.path.abspath(args.old), os.path.abspath(args.new)]
    med, runs, _ = harness.time_steps(os.path.abspath(__file__), names, seconds=args.seconds,
                                      rounds=args.rounds, config={"batch_size": args.batch})
    for n in names:
        print(f"{n}: {med[n] * 1e3:.2f} ms/step [{min(runs[n]) * 1e3:.2f}-{max(runs[n]) * 1e3:.2f}]")
    print(f"new / old = {med[names[1]] / med[names[0]]:.3f} (VAE 784-400-20, batch {args.batch}, "
          f"{args.rounds} rounds)")


if __name__ == "__main__":
    main()

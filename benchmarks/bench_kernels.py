"""The fused loops of scg/_kernels.c against the numpy passes they replace (scg.kernels), on the
VAE step's elementwise work: softplus, sigmoid, the Bernoulli log-likelihood from logits
forward and backward (alone, and with its incoming gradient multiplied in), the validation
checks on the pixels (a NaN in the data, logits not finite, values not 0 or 1), relu and the
fusions a traced step makes (a bias add with relu over the hidden layer's batch x 400; the
log-likelihood with its negation), and Adam over
the VAE's 652,824 parameters. Both sides are scg's own
code paths (the fallback forced as SCG_KERNELS=numpy would), timed in one process, rounds
interleaved, through the same ops functions the step calls (so on scg's worker threads where
the step would use them).

Usage: python benchmarks/bench_kernels.py [--batch 128 512] [--rounds 5] [--seconds 0.5]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import scg  # noqa: E402
from scg import kernels, ops  # noqa: E402


def timeit(f, seconds):
    f()
    t, k = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        f()
        k += 1
    return (time.perf_counter() - t) / k


class numpy_path:
    """Run the body with the compiled loops switched off (as SCG_KERNELS=numpy)."""

    def __enter__(self):
        self.saved = kernels._lib, kernels._state
        kernels._lib, kernels._state = None, "numpy (benchmark)"

    def __exit__(self, *exc):
        kernels._lib, kernels._state = self.saved


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    print("scg.kernels:", kernels.status())
    if kernels.lib() is None:
        sys.exit("the compiled loops are not in use: nothing to compare")
    rng = np.random.default_rng(0)
    sizes = [(784, 400), (400,), (400, 40), (40,), (20, 400), (400,), (400, 784), (784,)]  # the VAE's parameters
    params = [scg.nn.Parameter(rng.standard_normal(s), dtype=np.float32) for s in sizes]
    for q in params:
        q.grad = scg.tensor(rng.standard_normal(q.shape).astype(np.float32))
    adam = scg.optim.Adam(params, lr=1e-3)
    print(f"{args.rounds} rounds of >= {args.seconds} s each, interleaved; median [min-max] over rounds, ms")
    for batch in args.batch:
        x = (rng.random((batch, 784)) < 0.5).astype(np.float32)
        logits = (rng.standard_normal((batch, 784)) * 4).astype(np.float32)
        out = np.empty_like(logits)
        seed = np.broadcast_to(np.float32(-1 / batch), logits.shape)  # a sum's gradient, negated
        pre = (rng.standard_normal((batch, 400)) * 2).astype(np.float32)  # a hidden layer's product
        bias, hidden = rng.standard_normal(400).astype(np.float32), np.empty_like(pre)
        work = {
            "softplus": lambda: ops._softplus.into(logits, out=out),
            "sigmoid": lambda: ops._sigmoid.into(logits, out=out),
            "Bernoulli log-lik": lambda: ops._bernoulli_log_prob.into(x, logits, out=out),
            "its d/dlogits": lambda: ops._bernoulli_score.into(x, logits, out=out),
            "  times g (one number)": lambda: ops._bernoulli_score_times.into(seed, x, logits, out=out),
            "-log-lik (fused neg.)": lambda: ops._bernoulli_nll.into(x, logits, out=out),
            "relu (batch x 400)": lambda: ops._relu.into(pre, out=hidden),
            "bias add + relu": lambda: ops._bias_relu.into(pre, bias, out=hidden),
            "NaN check": lambda: kernels.has_nan(x),
            "finite check": lambda: kernels.all_finite(logits),
            "0/1 check": lambda: kernels.all_binary(x),
        }
        if batch == args.batch[0]:
            work["Adam (652,824 params)"] = adam.step
        print(f"-- batch {batch} (pixel logits {batch} x 784) --")
        for name, f in work.items():
            tc, tp = [], []
            for _ in range(args.rounds):
                tc.append(timeit(f, args.seconds) * 1e3)
                with numpy_path():
                    tp.append(timeit(f, args.seconds) * 1e3)
            print(f"{name:22s} fused {np.median(tc):6.3f} [{min(tc):.3f}-{max(tc):.3f}]   numpy {np.median(tp):6.3f} "
                  f"[{min(tp):.3f}-{max(tp):.3f}]   numpy / fused {np.median(tp) / np.median(tc):.2f}")


if __name__ == "__main__":
    main()

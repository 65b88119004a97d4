"""A VAE with categorical latents, trained with a choice of gradient estimator, to compare
the estimators on a real model (Fashion-MNIST, dynamic binarization).

    python -m models.discrete_vae train --estimator nvil --out runs/dvae-nvil
    python -m models.discrete_vae evaluate --out runs/dvae-nvil
    python -m models.discrete_vae compare --epochs 3 --out runs/dvae   # every estimator

q(z|x): ``--latents`` D independent categoricals with ``--categories`` K values each
(one-hot), from an MLP encoder; p(z) uniform; p(x|z) Bernoulli from an MLP decoder.
-ELBO = E_q[-log p(x|z)] + KL(q || uniform), the KL analytic (pathwise). The
reconstruction term needs a gradient estimator for z:

  score-ma    score function with a moving-average baseline
  nvil        score function with a learned, input-dependent baseline (Mnih & Gregor 2014)
  vimco       --samples draws per image, each with the leave-one-out mean of the others'
              costs as baseline (the VIMCO / RLOO idea applied to per-sample ELBOs)
  enumerate   exact sum over the K values (needs --latents 1)
  gumbel      Gumbel-softmax relaxation at --temperature (biased)

Each epoch logs the variance of the encoder's gradient estimate on a fixed batch
(scg.diagnostics.gradient_stats), so the estimators can be compared.
"""

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import scg
import scg.distributions as D
from models import cli, data
from models.cli import CheckpointError, CommandError, atomic_write
from models.vae import (add_run_options, load_checkpoint, plot_curve, positive_float, positive_int, save_checkpoint,
                        step_bytes, write_metrics)

ESTIMATORS = ("score-ma", "nvil", "vimco", "enumerate", "gumbel")


class DiscreteVAE(scg.nn.Module):
    """Encoder x (B, 784) -> logits (B, D, K) (or (B, K) when D = 1); decoder one-hot z -> pixel logits."""

    def __init__(self, latents=8, categories=4, hidden=200, rng=None):
        self.latents, self.categories = latents, categories
        self.encoder = scg.nn.MLP([784, hidden, latents * categories], rng=rng)
        self.decoder = scg.nn.MLP([latents * categories, hidden, 784], rng=rng)
        self.baseline_net = scg.nn.MLP([784, 100, 1], rng=rng)  # used by nvil only

    def logits(self, x):
        h = self.encoder(x)
        return h if self.latents == 1 else h.reshape(h.shape[:-1] + (self.latents, self.categories))

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels; z one-hot (..., B, [D,] K) -> (..., B)."""
        flat = z if self.latents == 1 else z.reshape(z.shape[:-2] + (self.latents * self.categories,))
        out = self.decoder(flat)
        return (x * out - scg.softplus(out)).sum(-1)

    def kl_to_uniform(self, logits):
        """KL(q || uniform) per image: sum over latents of sum_k q_k log q_k + log K."""
        log_q = scg.log_softmax(logits, axis=-1)
        kl = (scg.exp(log_q) * log_q).sum(-1) + math.log(self.categories)
        return kl if self.latents == 1 else kl.sum(-1)


class _Baseline(scg.nn.Module):
    """NVIL's baseline b(x), shaped to broadcast against the latent's log-prob."""

    def __init__(self, model):
        self.model = model

    def forward(self, x):
        b = self.model.baseline_net(x)
        return b[:, 0] if self.model.latents == 1 else b


def make_estimator(name, model, temperature):
    if name == "score-ma":
        return scg.ScoreFunction(scg.MovingAverageBaseline(0.9))
    if name == "nvil":
        return scg.ScoreFunction(scg.LearnedBaseline(_Baseline(model)))
    if name == "vimco":
        return scg.ScoreFunction(scg.LeaveOneOutBaseline())
    if name == "enumerate":
        if model.latents != 1:
            raise ValueError(
                f"--estimator enumerate needs --latents 1: the joint support of {model.latents} "
                f"categoricals has {model.categories}^{model.latents} values"
            )
        return scg.Enumerate()
    if name == "gumbel":
        return scg.GumbelSoftmax(temperature)
    raise ValueError(f"unknown estimator {name!r}; choose from {ESTIMATORS}")


def build_graph(model, x, estimator, n=None, rng=None):
    """One minibatch: a plate over the data, z with the chosen estimator (``n`` draws per
    image, for vimco), costs "reconstruction" (per image and draw) and "kl" (per image)."""
    b = x.shape[0]
    g = scg.Graph("discrete_vae", rng=rng)
    with g:
        xin = g.input("x", x)
        with g.plate("data", b):
            logits = g.deterministic("encoder", model.logits(xin))
            z = g.sample("z", D.OneHotCategorical(logits=logits), estimator=estimator, n=n, context=xin)
            g.cost("reconstruction", -model.log_likelihood(xin, z))
            g.cost("kl", model.kl_to_uniform(logits))
    return g


def elbo(model, x, samples=20, rng=None):
    """Per-image ELBO (B,): exact over z when D = 1, else a Monte Carlo average of hard samples."""
    with scg.no_grad():
        xt = scg.Tensor(x)
        logits = model.logits(xt)
        q = D.OneHotCategorical(logits=logits)
        if model.latents == 1:
            z = q.enumerate_support()  # (K, B, K)
            rec = (scg.exp(q.log_prob(z)) * model.log_likelihood(xt, z)).sum(0)
        else:
            z = q.sample((samples,), rng=scg.random.resolve(rng))
            rec = model.log_likelihood(xt, z).mean(0)
        return (rec - model.kl_to_uniform(logits)).data


def encoder_gradient_variance(model, x, estimator, n, runs=20, rng=None):
    """Total variance (sum over encoder parameters) of the gradient estimate on batch x
    (on a copy of the estimator, so its baseline's state is not disturbed)."""
    estimator = copy.deepcopy(estimator)
    stats = scg.diagnostics.gradient_stats(
        lambda: build_graph(model, x, estimator, n, rng=rng), model.encoder.parameters(), runs)
    return stats.total_variance()


def prepare(args):
    d = data.load(args.dataset, args.data_dir)
    x = d["train_images"].reshape(len(d["train_images"]), -1).astype(np.float32) / 255
    x_test = d["test_images"].reshape(len(d["test_images"]), -1).astype(np.float32) / 255
    x_valid, x_train = cli.split_train_valid(x, args.valid)
    if args.limit:
        x_train, x_valid, x_test = x_train[: args.limit], x_valid[: max(args.limit // 10, 100)], \
            x_test[: max(args.limit // 5, 200)]
    fixed = np.random.default_rng(2016)
    x_valid = (fixed.random(x_valid.shape) < x_valid).astype(np.float32)
    x_test = (fixed.random(x_test.shape) < x_test).astype(np.float32)
    return x_train, x_valid, x_test


CONFIG_KEYS = ("dataset", "data_dir", "epochs", "batch_size", "lr", "latents", "categories", "hidden",
               "estimator", "samples", "temperature", "seed", "valid", "limit")


OUTPUTS = ("checkpoint.npz", "metrics.jsonl", "evaluation.json", "learning_curve.png", "graph.svg")


def parameter_count(latents, categories, hidden):
    """Number of scalars in DiscreteVAE(latents, categories, hidden)."""
    dk = latents * categories
    return 2 * (784 * hidden + hidden + hidden * dk) + dk + 784 + 784 * 100 + 100 + 101


def train(args):
    n = args.samples if args.estimator == "vimco" else None
    count = parameter_count(args.latents, args.categories, args.hidden)
    draws = (n or 1) * (args.categories if args.estimator == "enumerate" else 1)
    cli.check_memory(step_bytes(draws, args.batch_size, args.hidden, args.latents * args.categories, count),
                     f"a training step with --batch-size {args.batch_size} --hidden {args.hidden} and {draws} "
                     f"draw(s) of z per image", "choose a smaller --batch-size, --samples or --hidden")
    x_train, x_valid, _ = prepare(args)
    with cli.run_folder(args.out, overwrite=args.overwrite, outputs=OUTPUTS, can_resume=False) as out:
        cli.check_disk(out, 2 * 12 * count, "a checkpoint (written beside the previous one)")
        return _train(args, out, n, x_train, x_valid)


def _train(args, out, n, x_train, x_valid):
    rng = np.random.default_rng(args.seed)
    scg.manual_seed(args.seed)
    model = DiscreteVAE(args.latents, args.categories, args.hidden, rng=rng)
    estimator = make_estimator(args.estimator, model, args.temperature)
    params = model.parameters() if args.estimator == "nvil" else \
        model.encoder.parameters() + model.decoder.parameters()
    opt = scg.optim.Adam(params, lr=args.lr)
    probe = (np.random.default_rng(7).random((64, 784)) < x_train[:64]).astype(np.float32)
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        total, seen = 0.0, 0
        bar = tqdm(range(0, len(order), args.batch_size), desc=f"{args.estimator} epoch {epoch}", unit="batch")
        for i in bar:
            xb = x_train[order[i : i + args.batch_size]]
            xb = (rng.random(xb.shape) < xb).astype(np.float32)
            g = build_graph(model, xb, estimator, n, rng=rng)
            loss = g.surrogate()
            opt.zero_grad()
            (loss / len(xb)).backward()
            opt.step()
            total -= loss.item()
            seen += len(xb)
            bar.set_postfix(bound=f"{total / seen:.2f}")
        row = dict(epoch=epoch, estimator=args.estimator, train_bound=total / seen,
                   valid_bound=float(elbo(model, x_valid, rng=np.random.default_rng(epoch)).mean()),
                   encoder_grad_variance=encoder_gradient_variance(model, probe, estimator, n,
                                                                   rng=np.random.default_rng(epoch)),
                   seconds=time.perf_counter() - t0)
        cli.check_diverged(row, epoch, out / "checkpoint.npz")
        history.append(row)
        print(json.dumps(row), flush=True)
        save_checkpoint(out / "checkpoint.npz", model, opt, rng, epoch,
                        {k: getattr(args, k) for k in CONFIG_KEYS}, history, kind="discrete_vae")
        write_metrics(out / "metrics.jsonl", history)
    plot_curve(history, out / "learning_curve.png")
    build_graph(model, probe[:8], copy.deepcopy(estimator), n, rng=np.random.default_rng(0)).render(
        out / "graph.svg", format="svg")
    return history


def evaluate(args):
    path = Path(args.out) / "checkpoint.npz"
    model_state, _, _, epoch, config, _ = load_checkpoint(
        path, kind="discrete_vae", config_keys=("latents", "categories", "hidden", "estimator", "dataset", "valid"))
    model = DiscreteVAE(config["latents"], config["categories"], config["hidden"])
    try:
        model.load_state_dict(model_state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: its arrays do not fit the model its settings describe ({e})") from None
    cli.check_finite(model, path)
    cfg = argparse.Namespace(**{**config, "data_dir": args.data_dir or config.get("data_dir")})
    _, _, x_test = prepare(cfg)
    test = float(np.mean(np.concatenate([elbo(model, x_test[i : i + 500], rng=np.random.default_rng(i))
                                         for i in range(0, len(x_test), 500)])))
    result = dict(estimator=config["estimator"], epoch=epoch, test_elbo=test, n_test=len(x_test))
    if not math.isfinite(test):
        raise CommandError(f"the test ELBO is not finite ({test}); nothing was written to "
                           f"{Path(args.out) / 'evaluation.json'}")
    print(json.dumps(result))
    atomic_write(Path(args.out) / "evaluation.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return result


def compare(args):
    """Train every applicable estimator with the same settings; write a table and a plot."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in ESTIMATORS:
        if name == "enumerate" and args.latents != 1:
            print("skipping enumerate (needs --latents 1)")
            continue
        sub = argparse.Namespace(**{**vars(args), "estimator": name, "out": str(out / name)})
        history = train(sub)
        result = evaluate(argparse.Namespace(out=sub.out, data_dir=args.data_dir))
        rows.append(dict(estimator=name, test_elbo=result["test_elbo"],
                         encoder_grad_variance=history[-1]["encoder_grad_variance"], history=history))
    atomic_write(out / "comparison.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    from models.vae import _plt, save_figure

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        ep = [h["epoch"] for h in r["history"]]
        a1.plot(ep, [h["valid_bound"] for h in r["history"]], "o-", label=r["estimator"])
        a2.semilogy(ep, [h["encoder_grad_variance"] for h in r["history"]], "o-", label=r["estimator"])
    a1.set(xlabel="epoch", ylabel="validation ELBO (nats)", title="bound")
    a2.set(xlabel="epoch", ylabel="total variance", title="encoder gradient variance")
    a1.legend()
    fig.tight_layout()
    save_figure(fig, out / "comparison.png")
    print(f"{'estimator':10s} {'test ELBO':>10s} {'grad var':>10s}")
    for r in rows:
        print(f"{r['estimator']:10s} {r['test_elbo']:10.2f} {r['encoder_grad_variance']:10.3g}")


def parser():
    ap = argparse.ArgumentParser(prog="python -m models.discrete_vae", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for cmd in ("train", "compare"):
        t = sub.add_parser(cmd, help="train one estimator" if cmd == "train" else "train and compare all")
        if cmd == "train":
            t.add_argument("--estimator", default="nvil", choices=ESTIMATORS)
        t.add_argument("--dataset", default="fashion-mnist", choices=data.DATASETS)
        t.add_argument("--data-dir", default=None)
        t.add_argument("--epochs", type=positive_int, default=10 if cmd == "train" else 3)
        t.add_argument("--batch-size", type=positive_int, default=100)
        t.add_argument("--lr", type=positive_float, default=1e-3)
        t.add_argument("--latents", type=positive_int, default=1 if cmd == "compare" else 8)
        t.add_argument("--categories", type=positive_int, default=16 if cmd == "compare" else 4)
        t.add_argument("--hidden", type=positive_int, default=200)
        t.add_argument("--samples", type=positive_int, default=5, help="draws per image for vimco")
        t.add_argument("--temperature", type=positive_float, default=0.5, help="for gumbel")
        t.add_argument("--valid", type=positive_int, default=5000)
        t.add_argument("--limit", type=positive_int, default=None)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--out", default="runs/dvae")
        add_run_options(t, resume=False)
    e = sub.add_parser("evaluate", help="test ELBO of a trained run")
    e.add_argument("--out", default="runs/dvae")
    e.add_argument("--data-dir", default=None)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "train" and args.estimator == "vimco" and args.samples < 2:
        parser().error("--estimator vimco needs --samples >= 2")
    if args.command == "train" and args.estimator == "enumerate" and args.latents != 1:
        parser().error(f"--estimator enumerate needs --latents 1: the joint support of {args.latents} "
                       f"categoricals has {args.categories}^{args.latents} values")
    cli.run_command({"train": train, "evaluate": evaluate, "compare": compare}[args.command], args)


if __name__ == "__main__":
    main()

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

The estimators are the table ``ESTIMATORS`` (name -> factory); a new one is one entry
there. Each epoch logs the variance of the encoder's gradient estimate on a fixed batch
(scg.diagnostics.gradient_stats), so the estimators can be compared.
"""

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np

import scg
import scg.distributions as D
from models import cli, training


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

    def p_x(self, z):
        """p(x|z), one Bernoulli per pixel; z one-hot (..., B, [D,] K) -> batch shape (..., B, 784)."""
        flat = z if self.latents == 1 else z.reshape(z.shape[:-2] + (self.latents * self.categories,))
        return D.Bernoulli(logits=self.decoder(flat))

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels: (..., B)."""
        return self.p_x(z).log_prob(x).sum(-1)

    def kl_to_uniform(self, logits):
        """KL(q || uniform) per image: sum over latents of sum_k q_k log q_k + log K."""
        log_q = scg.log_softmax(logits, axis=-1)
        kl = (scg.exp(log_q) * log_q).sum(-1) + math.log(self.categories)
        return kl if self.latents == 1 else kl.sum(-1)


class _Baseline(scg.nn.Module):
    """NVIL's baseline b(x), shaped to broadcast against the latent's log-prob."""

    def __init__(self, net, latents):
        self.net, self.latents = net, latents

    def forward(self, x):
        b = self.net(x)
        return b[:, 0] if self.latents == 1 else b


def _enumerate(model, options):
    if model.latents != 1:
        raise ValueError(f"--estimator enumerate needs --latents 1: the joint support of {model.latents} "
                         f"categoricals has {model.categories}^{model.latents} values")
    return scg.Enumerate(), None


def _vimco(model, options):
    if options.samples < 2:
        raise ValueError("--estimator vimco needs --samples >= 2")
    return scg.ScoreFunction(scg.LeaveOneOutBaseline()), options.samples


# name -> factory(model, options) -> (estimator of z, draws of z per image or None). ``options``
# is the parsed command line (--temperature, --samples, ...); a factory raises ValueError,
# naming the options, when they do not suit it.
ESTIMATORS = {
    "score-ma": lambda model, options: (scg.ScoreFunction(scg.MovingAverageBaseline(0.9)), None),
    "nvil": lambda model, options: (scg.ScoreFunction(scg.LearnedBaseline(_Baseline(model.baseline_net,
                                                                                    model.latents))), None),
    "vimco": _vimco,
    "enumerate": _enumerate,
    "gumbel": lambda model, options: (scg.GumbelSoftmax(options.temperature), None),
}


def choose_estimator(name, model, options):
    """(estimator, n) from ``ESTIMATORS[name]``; ValueError for an unknown or unsuitable one."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {tuple(ESTIMATORS)}")
    return ESTIMATORS[name](model, options)


def make_estimator(name, model, temperature=0.5, samples=5):
    """The estimator ``name`` for ``model`` (see ``ESTIMATORS``)."""
    return choose_estimator(name, model, argparse.Namespace(temperature=temperature, samples=samples))[0]


def trainable(model, estimator):
    """The parameters the optimizer moves: encoder, decoder, and the baseline network when
    the estimator learns one."""
    params = model.encoder.parameters() + model.decoder.parameters()
    baseline = getattr(estimator, "baseline", None)
    if isinstance(baseline, scg.LearnedBaseline):
        params += baseline.module.parameters()
    return params


def build_graph(model, x, estimator, n=None, rng=None):
    """One minibatch: a plate over the data, z with the chosen estimator (``n`` draws per
    image, for vimco), costs "reconstruction" (-log p(x|z), per image and draw) and "kl"
    (per image): the negative ELBO."""
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
    """Per-image ELBO (B,), no gradients: the terms of :func:`build_graph`'s costs, exact over
    z when D = 1, else a Monte Carlo average over ``samples`` hard draws of z. (Building the
    graph under no_grad with scg.Enumerate and reading its objective per image gave the same
    numbers but was 30-50% slower: the graph keeps every intermediate value alive.)"""
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


# ---- the command line -------------------------------------------------------------------


CONFIG_KEYS = ("dataset", "data_dir", "epochs", "batch_size", "lr", "latents", "categories", "hidden",
               "estimator", "samples", "temperature", "seed", "valid", "limit")
OUTPUTS = ("checkpoint.npz", "metrics.jsonl", "evaluation.json", "learning_curve.png", "graph.svg")


def parameter_count(latents, categories, hidden):
    """Number of scalars in DiscreteVAE(latents, categories, hidden)."""
    dk = latents * categories
    return 2 * (784 * hidden + hidden + hidden * dk) + dk + 784 + 784 * 100 + 100 + 101


def train(args):
    rng = np.random.default_rng(args.seed)
    scg.manual_seed(args.seed)
    model = DiscreteVAE(args.latents, args.categories, args.hidden, rng=rng)
    try:
        estimator, n = choose_estimator(args.estimator, model, args)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    count = parameter_count(args.latents, args.categories, args.hidden)
    draws = (n or 1) * (args.categories if estimator.enumerated else 1)
    cli.check_memory(cli.step_bytes(draws, args.batch_size, args.hidden, args.latents * args.categories, count),
                     f"a training step with --batch-size {args.batch_size} --hidden {args.hidden} and {draws} "
                     f"draw(s) of z per image", "choose a smaller --batch-size, --samples or --hidden")
    images = training.prepare(args.dataset, args.data_dir, args.valid, args.limit)
    opt = scg.optim.Adam(trainable(model, estimator), lr=args.lr)
    probe = training.binarize(images.train[:64], np.random.default_rng(7))

    def validate(epoch):
        return dict(valid_bound=float(elbo(model, images.valid, rng=np.random.default_rng(epoch)).mean()),
                    encoder_grad_variance=encoder_gradient_variance(model, probe, estimator, n,
                                                                    rng=np.random.default_rng(epoch)))

    with cli.run_folder(args.out, overwrite=args.overwrite, outputs=OUTPUTS, can_resume=False) as out:
        cli.check_disk(out, 2 * 12 * count, "a checkpoint (written beside the previous one)")
        history = training.fit(lambda xb: build_graph(model, xb, estimator, n, rng=rng), model, opt, rng,
                               images.train, epochs=args.epochs, batch_size=args.batch_size, validate=validate,
                               out=out, config={k: getattr(args, k) for k in CONFIG_KEYS}, kind="discrete_vae",
                               tags=dict(estimator=args.estimator), label=f"{args.estimator} ")
        training.plot_curve(history, out / "learning_curve.png")
        build_graph(model, probe[:8], copy.deepcopy(estimator), n, rng=np.random.default_rng(0)).render(
            out / "graph.svg", format="svg")
    return history


def evaluate(args):
    model, config, epoch = training.load_model(
        Path(args.out) / "checkpoint.npz", "discrete_vae",
        lambda c: DiscreteVAE(c["latents"], c["categories"], c["hidden"]),
        config_keys=("latents", "categories", "hidden", "estimator", "dataset", "valid"))
    x_test = training.prepare(config["dataset"], args.data_dir or config.get("data_dir"), config["valid"],
                              config.get("limit")).test_binary
    test = training.batched_mean(lambda xb, i: elbo(model, xb, rng=np.random.default_rng(i)), x_test, 500)
    result = dict(estimator=config["estimator"], epoch=epoch, test_elbo=test, n_test=len(x_test))
    return training.write_evaluation(args.out, result, ("test_elbo",))


def compare(args):
    """Train every applicable estimator with the same settings; write a table and a plot."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in ESTIMATORS:
        sub = argparse.Namespace(**{**vars(args), "estimator": name, "out": str(out / name)})
        try:
            choose_estimator(name, DiscreteVAE(args.latents, args.categories, 1), sub)
        except ValueError as e:
            print(f"skipping {name}: {e}")
            continue
        history = train(sub)
        result = evaluate(argparse.Namespace(out=sub.out, data_dir=args.data_dir))
        rows.append(dict(estimator=name, test_elbo=result["test_elbo"],
                         encoder_grad_variance=history[-1]["encoder_grad_variance"], history=history))
    cli.atomic_write(out / "comparison.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    plt = training.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        ep = [h["epoch"] for h in r["history"]]
        a1.plot(ep, [h["valid_bound"] for h in r["history"]], "o-", label=r["estimator"])
        a2.semilogy(ep, [h["encoder_grad_variance"] for h in r["history"]], "o-", label=r["estimator"])
    a1.set(xlabel="epoch", ylabel="validation ELBO (nats)", title="bound")
    a2.set(xlabel="epoch", ylabel="total variance", title="encoder gradient variance")
    a1.legend()
    fig.tight_layout()
    training.save_figure(fig, out / "comparison.png")
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
            t.add_argument("--estimator", default="nvil", choices=tuple(ESTIMATORS))
        t.add_argument("--latents", type=cli.positive_int, default=1 if cmd == "compare" else 8)
        t.add_argument("--categories", type=cli.positive_int, default=16 if cmd == "compare" else 4)
        t.add_argument("--hidden", type=cli.positive_int, default=200)
        t.add_argument("--samples", type=cli.positive_int, default=5, help="draws per image for vimco")
        t.add_argument("--temperature", type=cli.positive_float, default=0.5, help="for gumbel")
        cli.add_training_options(t, epochs=10 if cmd == "train" else 3, batch_size=100, out="runs/dvae",
                                 resume=False)
    e = sub.add_parser("evaluate", help="test ELBO of a trained run")
    e.add_argument("--out", default="runs/dvae")
    e.add_argument("--data-dir", default=None)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    cli.run_command({"train": train, "evaluate": evaluate, "compare": compare}[args.command], args)


if __name__ == "__main__":
    main()

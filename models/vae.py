"""A variational autoencoder (Kingma & Welling 2014) and its importance-weighted bound
(IWAE, Burda et al. 2016), defined with scg.Graph and trained on real images.

    python -m models.vae train --out runs/vae                    # Fashion-MNIST, 784-400-20, 30 epochs
    python -m models.vae evaluate --out runs/vae --k 500         # test ELBO and log-likelihood
    python -m models.vae sample --out runs/vae --n 64            # a grid of samples
    python -m models.vae train --k 5 --estimator dreg --out runs/iwae-dreg   # DReG encoder gradient
    python -m models.vae snr --out runs/snr                      # encoder-gradient SNR vs K, reparam vs DReG

Model: q(z|x) = N(mu(x), diag sigma(x)^2) from an MLP encoder (sigma through softplus),
p(z) = N(0, I), p(x|z) = Bernoulli(logits(z)) from an MLP decoder (or a Gaussian with a
learned per-pixel scale). Training minimizes the negative bound per datapoint:
-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)) (KL analytic by default), or for k > 1
-L_k = -E[log (1/k) sum_j p(x, z_j) / q(z_j|x)]. Binarization is dynamic (a fresh
Bernoulli draw of each image every time it is used) unless --binarize static.

The encoder's gradient estimator (``--estimator``, see :data:`ESTIMATORS`):
* ``reparam``: the pathwise gradient of the costs above (the default);
* ``stl``: "sticking the landing" (Roeder et al. 2017), k = 1 only: the ELBO is declared as a
  bound ``g.bound("neg_bound", log_w, over="z")`` with log_w = log p(x|z) + log p(z) - log q(z|x)
  (so the KL is Monte Carlo), and the score term of q's parameters in log q is dropped;
  unbiased, and zero variance when q is the true posterior. For k > 1 it is biased (Tucker et
  al. 2019), so it is refused there;
* ``dreg``: doubly reparameterized gradient (Tucker et al. 2019) under the same bound with k
  draws: unbiased for L_k, and the encoder gradient's signal-to-noise ratio does not fall as k
  grows (the standard IWAE encoder gradient's does, Rainforth et al. 2018). At k = 1 it is
  exactly STL (all normalised weights are 1).
The decoder's gradient is the standard one under every estimator.
"""

if __name__ == "__main__":  # run as a program: Ctrl-C during the imports below ends in one line
    from models.entry import guard_startup, quiet_blas_threads

    guard_startup()
    quiet_blas_threads()

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import scg
import scg.distributions as D
from models import cli, training

# ---- the model ----------------------------------------------------------------------


class VAE(scg.nn.Module):
    """Encoder MLP x -> (mu, sigma) of q(z|x); decoder MLP z -> logits (or mean) of p(x|z).

    Shapes: x (B, 784); z (B, latent) or (k, B, latent).
    """

    def __init__(self, x_dim=784, hidden=400, latent=20, likelihood="bernoulli", rng=None):
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.latent, self.likelihood = latent, likelihood
        self.encoder = scg.nn.MLP([x_dim, hidden, 2 * latent], rng=rng)
        self.decoder = scg.nn.MLP([latent, hidden, x_dim], rng=rng)
        if likelihood == "gaussian":
            self.log_scale = scg.nn.Parameter(np.full(x_dim, -1.0, dtype=np.float32))

    def q(self, x):
        h = self.encoder(x)
        mu, pre = h[..., : self.latent], h[..., self.latent :]
        return D.Normal(mu, scg.softplus(pre) + 1e-4)

    def p_x(self, z):
        """p(x|z), one distribution per pixel: batch shape z.shape[:-1] + (784,)."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return D.Bernoulli(logits=out)
        return D.Normal(out, scg.exp(self.log_scale))

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels: shape z.shape[:-1]."""
        return self.p_x(z).log_prob(x).sum(-1)


def _check_kl(kl):
    if kl not in ("analytic", "mc"):
        raise ValueError(f"kl must be 'analytic' or 'mc', got {kl!r}")


# --estimator name -> the estimator of z (a new instance per graph: they are stateless).
ESTIMATORS = {"reparam": scg.Reparam, "stl": scg.STL, "dreg": scg.DReG}


def check_estimator(estimator, k, kl):
    """Refuse (ValueError, one line naming the option) what ``estimator`` cannot do right:
    an unknown name, STL with k > 1 (biased), STL or DReG with the analytic KL (their
    bound needs the per-sample log-weight log p(x|z) + log p(z) - log q(z|x))."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    _check_kl(kl)
    if estimator == "stl" and k > 1:
        raise ValueError(f"--estimator stl is biased for --k > 1 (Tucker et al. 2019); use --estimator dreg "
                         f"with --k {k}, or stl with --k 1")
    if estimator != "reparam" and kl == "analytic":
        raise ValueError(f"--estimator {estimator} needs --kl mc: its bound is made of the per-sample "
                         f"log-weights log p(x|z) + log p(z) - log q(z|x)")


def prior(model, batch):
    """p(z) = N(0, I), batch shape (batch, latent)."""
    return D.Normal(np.zeros((batch, model.latent), np.float32), np.ones((batch, model.latent), np.float32))


def kl_term(q, p, z, kl):
    """KL(q(z|x) || p(z)) per datapoint (B,): analytic, or its one-sample Monte Carlo
    estimate log q(z|x) - log p(z) at the draw z (B, latent)."""
    if kl == "analytic":
        return D.kl_divergence(q, p).sum(-1)
    return (q.log_prob(z) - p.log_prob(z)).sum(-1)


def log_weights(model, x, q, p, z):
    """log w_j = log p(x|z_j) + log p(z_j) - log q(z_j|x) per draw and datapoint (k, B) for
    draws z (k, B, latent) of q."""
    return model.log_likelihood(x, z) + (p.log_prob(z) - q.log_prob(z)).sum(-1)


def iwae_bound(model, x, q, p, z):
    """L_k per datapoint (B,) from k draws z (k, B, latent) of q: log (1/k) sum_j w_j with
    w_j from :func:`log_weights`."""
    return scg.logsumexp(log_weights(model, x, q, p, z), axis=0) - math.log(z.shape[0])


def build_graph(model, x, k=1, kl="analytic", rng=None, estimator="reparam"):
    """The stochastic computation graph of one minibatch ``x`` (B, 784): a plate over the
    data, the latent z as a reparameterized node, and the negative bound as costs.

    estimator "reparam", k == 1: x observed under p(x|z) (the cost -log p(x|z)) and the
    cost "kl" (analytic or Monte Carlo), so the negative ELBO reads -E_q[log p(x|z)] + KL(q || p);
    "reparam", k > 1: z has k samples (k, B, latent) and the cost is "neg_iwae" = -log mean_j w_j;
    "stl" / "dreg": z has k samples (k >= 1) drawn with scg.STL() / scg.DReG(), and the
    cost is the declared bound "neg_bound" = -log mean_j w_j over z's sample axis, log w_j =
    log p(x|z_j) + log p(z_j) - log q(z_j|x) of shape (k, B) (the same value as "neg_iwae";
    for k = 1 the negative ELBO with a Monte Carlo KL). See :func:`check_estimator`.
    """
    check_estimator(estimator, k, kl)
    b = x.shape[0]
    g = scg.Graph(("vae" if k == 1 else f"iwae_k{k}") + ("" if estimator == "reparam" else f"_{estimator}"), rng=rng)
    p = prior(model, b)
    with g:
        xin = g.input("image", x)
        with g.plate("data", b):
            q = model.q(xin)
            g.deterministic("encoder", q.loc)
            if estimator != "reparam":
                z = g.sample("z", q, n=k, estimator=ESTIMATORS[estimator]())
                g.bound("neg_bound", log_weights(model, xin, q, p, z), over="z")
            elif k == 1:
                z = g.sample("z", q)
                g.observe("x", model.p_x(z), xin)
                g.cost("kl", kl_term(q, p, z, kl))
            else:
                z = g.sample("z", q, n=k)
                g.cost("neg_iwae", -iwae_bound(model, xin, q, p, z))
    return g


def bound(model, x, k=1, kl="analytic", rng=None):
    """The per-datapoint bound (ELBO for k=1, L_k otherwise) as an ndarray (B,), no gradients:
    the terms of :func:`build_graph`'s costs evaluated directly (building the graph under
    no_grad and reading its objective was 5-15% slower, as its nodes keep every
    intermediate value alive)."""
    _check_kl(kl)
    rng = scg.random.resolve(rng)
    with scg.no_grad():
        xt = scg.Tensor(x)
        q, p = model.q(xt), prior(model, len(x))
        if k == 1:
            z = q.rsample(rng=rng)
            return (model.log_likelihood(xt, z) - kl_term(q, p, z, kl)).data
        return iwae_bound(model, xt, q, p, q.rsample((k,), rng=rng)).data


def dataset_bound(model, x, k, batch=500, kl="analytic", rng=None, desc=None):
    """Mean per-datapoint bound over ``x``, about ``batch`` draws of z at a time (a progress
    bar when ``desc``)."""
    return training.batched_mean(lambda xb, i: bound(model, xb, k=k, kl=kl, rng=rng), x, max(1, batch // k), desc)


# ---- pictures -------------------------------------------------------------------------


def decode_mean(model, z):
    """The mean of p(x|z) for latents z (n, latent): (n, 784) in [0, 1]."""
    with scg.no_grad():
        out = model.decoder(scg.Tensor(z.astype(np.float32))).data
    return 1 / (1 + np.exp(-out)) if model.likelihood == "bernoulli" else np.clip(out, 0, 1)


def plot_samples(model, path, n=64, rng=None):
    """n samples in a grid of ceil(sqrt(n)) columns (the last row may be part empty)."""
    rng = scg.random.resolve(rng)
    z = rng.standard_normal((n, model.latent)).astype(np.float32)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    training.plot_images(decode_mean(model, z), rows, cols, path, "samples: mean of p(x|z), z ~ N(0, I)",
                         figsize=(5, 5 * rows / cols))


def plot_reconstructions(model, x, path, n=16):
    with scg.no_grad():
        mu = model.q(scg.Tensor(x[:n])).loc.data
    training.plot_images(np.concatenate([x[:n], decode_mean(model, mu)]), 2, n, path,
                         "test images (top) and reconstructions from the posterior mean (bottom)", figsize=(8, 1.4))


def plot_latent(model, x, labels, path, dataset="fashion-mnist"):
    """2-D latent: the decoded manifold; otherwise the posterior means projected on their
    two principal components, coloured by class."""
    if model.latent == 2:
        from scipy.stats import norm

        grid = norm.ppf(np.linspace(0.05, 0.95, 15))
        z = np.array([[a, b] for b in grid[::-1] for a in grid], dtype=np.float32)
        training.plot_images(decode_mean(model, z), 15, 15, path, "decoded latent manifold", figsize=(6, 6))
        return
    with scg.no_grad():
        mu = model.q(scg.Tensor(x)).loc.data
    centred = mu - mu.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    p = centred @ vt[:2].T
    plt = training.pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for c in np.unique(labels):
        pts = p[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, color=plt.cm.tab10(int(c) % 10), label=training.class_name(dataset, int(c)))
    ax.legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(f"posterior means, {len(x)} test images (2 principal components)", fontsize=10)
    fig.tight_layout()
    training.save_figure(fig, path)


def write_pictures(model, args, out, history, images):
    if history:
        training.plot_curve(history, out / "learning_curve.png")
    plot_samples(model, out / "samples.png", rng=np.random.default_rng(0))
    plot_reconstructions(model, images.test_binary if args.likelihood == "bernoulli" else images.test,
                         out / "reconstructions.png")
    n = min(len(images.test), 5000)
    plot_latent(model, images.test_binary[:n], images.test_labels[:n], out / "latent.png", dataset=args.dataset)
    g = build_graph(model, images.test_binary[:8], k=args.k, kl=args.kl, rng=np.random.default_rng(0),
                    estimator=args.estimator)
    g.render(out / "graph.svg", format="svg")


# ---- the command line -------------------------------------------------------------------


def prepare(cfg):
    """:class:`models.training.Images` as the settings ``cfg`` ask (held-out sets binarized
    for a Bernoulli likelihood; the training set too with --binarize static)."""
    bernoulli = cfg.likelihood == "bernoulli"
    images = training.prepare(cfg.dataset, cfg.data_dir, cfg.valid, cfg.limit, binarize_held_out=bernoulli)
    if bernoulli and cfg.binarize == "static":
        images = images._replace(train=training.binarize(images.train, np.random.default_rng(0)))
    return images


def parameter_count(hidden, latent, x_dim=784, likelihood="bernoulli"):
    """Number of scalars in VAE(x_dim, hidden, latent, likelihood)."""
    encoder = x_dim * hidden + hidden + hidden * 2 * latent + 2 * latent
    decoder = latent * hidden + hidden + hidden * x_dim + x_dim
    return encoder + decoder + (x_dim if likelihood == "gaussian" else 0)


OUTPUTS = ("checkpoint.npz", "metrics.jsonl", "evaluation.json", "learning_curve.png", "samples.png",
           "reconstructions.png", "latent.png", "graph.svg")
CONFIG_KEYS = ("dataset", "data_dir", "epochs", "batch_size", "lr", "latent", "hidden", "k", "kl", "estimator",
               "likelihood", "binarize", "seed", "valid", "limit")


def resolve_estimator(args):
    """Fill in --kl when not given (analytic for reparam, mc for stl/dreg, which need it) and
    refuse unsuitable combinations with a CommandError."""
    if args.kl is None:
        args.kl = "analytic" if args.estimator == "reparam" else "mc"
    try:
        check_estimator(args.estimator, args.k, args.kl)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None


def train(args):
    resolve_estimator(args)
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    params = parameter_count(args.hidden, args.latent, likelihood=args.likelihood)
    cli.check_memory(cli.step_bytes(args.k, args.batch_size, args.hidden, args.latent, params),
                     f"a training step with --k {args.k} --batch-size {args.batch_size} --hidden {args.hidden}",
                     "choose a smaller --k, --batch-size or --hidden")
    images = prepare(args)
    with cli.run_folder(args.out, resume=args.resume, overwrite=args.overwrite, outputs=OUTPUTS) as out:
        cli.check_disk(out, 2 * 12 * params, "a checkpoint (written beside the previous one)")
        rng = np.random.default_rng(args.seed)
        scg.manual_seed(args.seed)
        model = VAE(hidden=args.hidden, latent=args.latent, likelihood=args.likelihood, rng=rng)
        opt = scg.optim.Adam(model.parameters(), lr=args.lr)
        start, history = 1, []
        if args.resume:
            start, history = training.resume(out / "checkpoint.npz", "vae", model, opt, rng, config,
                                             defaults={"estimator": "reparam"})  # runs before --estimator

        def validate(epoch):
            if not len(images.valid):  # --valid 0: every training image is trained on
                return dict(valid_bound=None)
            return dict(valid_bound=dataset_bound(model, images.valid, k=args.k, kl=args.kl,
                                                  rng=np.random.default_rng(epoch)))

        def graph(xb):
            return build_graph(model, xb, k=args.k, kl=args.kl, rng=rng, estimator=args.estimator)

        history = training.fit(graph, model, opt, rng,
                               images.train, epochs=args.epochs, batch_size=args.batch_size, validate=validate,
                               out=out, config=config, kind="vae", history=history, start=start,
                               dynamic=args.likelihood == "bernoulli" and args.binarize == "dynamic",
                               trace=args.trace)
        write_pictures(model, args, out, history, images)
    return model, history


# What evaluate and sample read of a checkpoint's settings, and what each must be.
CONFIG_SPEC = {
    "hidden": ("an integer >= 1", training.positive_int),
    "latent": ("an integer >= 1", training.positive_int),
    "likelihood": ("one of bernoulli, gaussian", training.one_of("bernoulli", "gaussian")),
    "binarize": ("one of dynamic, static", training.one_of("dynamic", "static")),
    "estimator": (f"one of {', '.join(ESTIMATORS)}", training.one_of(*ESTIMATORS)),
    **training.DATA_SPEC,
}


def model_from_checkpoint(out):
    """(model, config, epoch) from ``out/checkpoint.npz``; refuses other models' checkpoints,
    settings that are not what :data:`CONFIG_SPEC` says, and models with non-finite parameters."""
    return training.load_model(
        Path(out) / "checkpoint.npz", "vae",
        lambda c: VAE(hidden=c["hidden"], latent=c["latent"], likelihood=c["likelihood"]),
        config_keys=("hidden", "latent", "likelihood", "dataset", "valid", "binarize"), config_spec=CONFIG_SPEC)


def evaluate(args):
    model, config, epoch = model_from_checkpoint(args.out)
    cfg = argparse.Namespace(**{**config, "data_dir": args.data_dir or config.get("data_dir"),
                                "limit": args.limit if args.limit is not None else config.get("limit")})
    step = max(1, 500 // args.k)
    cli.check_memory(cli.step_bytes(args.k, step, config["hidden"], config["latent"], 0, backward=False),
                     f"evaluating with --k {args.k}", "choose a smaller --k")
    x_test = prepare(cfg).test_binary
    rng = np.random.default_rng(args.seed)
    elbo = dataset_bound(model, x_test, k=1, rng=rng, desc="test ELBO")
    ll = dataset_bound(model, x_test, k=args.k, rng=rng, desc=f"test log-likelihood (k={args.k})")
    result = dict(epoch=epoch, test_elbo=elbo, test_log_likelihood=ll, k=args.k, n_test=len(x_test),
                  estimator=config.get("estimator", "reparam"))  # checkpoints before --estimator were reparam
    return training.write_evaluation(args.out, result, ("test_elbo", "test_log_likelihood"))


# ---- signal-to-noise ratio of the encoder gradient against k ------------------------------


SNR_OUTPUTS = ("snr_vs_k.json", "snr_vs_k.png")


def encoder_snr(model, x, k, estimator, runs, rng):
    """SNR of the encoder gradient of the negative bound L_k on the fixed minibatch ``x``
    (B, 784) over ``runs`` independent estimates (``estimator`` "reparam": the standard IWAE
    gradient, Monte Carlo KL at k=1; "dreg": DReG, which is STL at k=1).

    Per encoder parameter element: SNR = |mean| / std over the runs (Rainforth et al. 2018);
    elements whose estimate is exactly 0 in every run carry no signal and no noise and are left
    out (first-layer weights from pixels that are off in every image of ``x`` while their ReLU
    unit is on, and the weights of units off for every image). Returns
    ``(mean SNR, median SNR, elements used)``."""
    stats = scg.diagnostics.gradient_stats(
        lambda: build_graph(model, x, k=k, kl="mc", rng=rng, estimator=estimator), model.encoder.parameters(), runs)
    snr = np.concatenate([r.ravel() for r in stats.snr])
    live = np.concatenate([np.any(s != 0, axis=0).ravel() for s in stats.samples])
    return float(snr[live].mean()), float(np.median(snr[live])), int(live.sum())


def plot_snr(rows, path, title):
    """SNR (mean and median over the encoder's parameters) against k, log-log, one colour
    per estimator."""
    plt = training.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, est in enumerate(dict.fromkeys(r["estimator"] for r in rows)):
        mine = [r for r in rows if r["estimator"] == est]
        ks = [r["k"] for r in mine]
        colour = plt.cm.tab10(i)
        ax.plot(ks, [r["snr_mean"] for r in mine], "o-", color=colour, label=f"{est} (mean)")
        ax.plot(ks, [r["snr_median"] for r in mine], "s--", color=colour, label=f"{est} (median)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel("encoder gradient SNR  |mean| / std")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    training.save_figure(fig, path)


def snr(args):
    """Train a VAE briefly (reparam, ELBO), then measure the encoder gradient's SNR for each
    k and estimator on one fixed minibatch; write ``snr_vs_k.json`` and ``snr_vs_k.png``."""
    with cli.run_folder(args.out, overwrite=args.overwrite, outputs=SNR_OUTPUTS, can_resume=False) as out:
        if (out / "snr_vs_k.json").exists() and not args.overwrite:
            raise cli.CommandError(f"--out {out} already holds snr_vs_k.json; pass --overwrite to replace it, "
                                   f"or choose another --out")
        cfg = argparse.Namespace(dataset=args.dataset, data_dir=args.data_dir, valid=args.valid, limit=args.limit,
                                 likelihood="bernoulli", binarize="dynamic")
        images = prepare(cfg)
        if len(images.train) < args.snr_batch:
            raise cli.CommandError(f"--snr-batch {args.snr_batch} is more than the {len(images.train)} training "
                                   f"images; choose a smaller --snr-batch or a larger --limit")
        rng = np.random.default_rng(args.seed)
        scg.manual_seed(args.seed)
        model = VAE(hidden=args.hidden, latent=args.latent, rng=rng)
        opt = scg.optim.Adam(model.parameters(), lr=args.lr)
        for epoch in range(1, args.epochs + 1):  # partly trained: SNR at initialization says little
            bound_ = training.train_epoch(lambda xb: build_graph(model, xb, rng=rng), opt, images.train,
                                          args.batch_size, rng, desc=f"training epoch {epoch}/{args.epochs}")
            print(json.dumps(dict(epoch=epoch, train_bound=bound_)), flush=True)
        x = training.binarize(images.train[: args.snr_batch], np.random.default_rng(args.seed + 1))
        rows = []
        for k in args.ks:
            for est in ("reparam", "dreg"):
                t0 = time.perf_counter()
                mean, median, used = encoder_snr(model, x, k, est, args.runs, np.random.default_rng([args.seed, k]))
                rows.append(dict(k=k, estimator=est, snr_mean=mean, snr_median=median, elements=used,
                                 seconds=time.perf_counter() - t0))
                print(json.dumps(rows[-1]), flush=True)
        config = {key: getattr(args, key) for key in ("dataset", "epochs", "limit", "valid", "batch_size", "snr_batch", "hidden",
                                                      "latent", "lr", "runs", "ks", "seed")}
        result = dict(config=config, statistic="per encoder parameter element |mean|/std over runs on one fixed "
                      "minibatch; mean and median over the elements with a nonzero estimate",
                      notes="reparam at k=1 uses a Monte Carlo KL (the IWAE estimator at k=1); dreg at k=1 is STL",
                      rows=rows)
        cli.atomic_write(out / "snr_vs_k.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
        plot_snr(rows, out / "snr_vs_k.png",
                 f"encoder gradient SNR, VAE {args.hidden}-{args.latent} after {args.epochs} epoch(s), "
                 f"{args.runs} runs, {args.snr_batch} images")
        print(f"wrote {out / 'snr_vs_k.json'} and {out / 'snr_vs_k.png'}")
    return result


def sample(args):
    model, _, _ = model_from_checkpoint(args.out)
    path = Path(args.out) / "samples.png"
    plot_samples(model, path, n=args.n, rng=np.random.default_rng(args.seed))
    print(f"wrote {args.n} samples to {path}")


def parser():
    ap = argparse.ArgumentParser(prog="python -m models.vae", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a VAE (or IWAE with --k > 1)")
    t.add_argument("--latent", type=cli.positive_int, default=20, help="latent dimensions (2 draws the manifold)")
    t.add_argument("--hidden", type=cli.positive_int, default=400)
    t.add_argument("--k", type=cli.positive_int, default=1, help="importance samples: 1 = ELBO, >1 = IWAE bound")
    t.add_argument("--kl", default=None, choices=("analytic", "mc"),
                   help="KL term for k=1 (default: analytic for reparam, mc for stl/dreg, which need it)")
    t.add_argument("--estimator", default="reparam", choices=tuple(ESTIMATORS),
                   help="encoder gradient: reparam (pathwise), stl (k=1 only), dreg (any k)")
    t.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "gaussian"))
    t.add_argument("--binarize", default="dynamic", choices=("dynamic", "static"))
    cli.add_training_options(t, epochs=30, batch_size=128, out="runs/vae")
    e = sub.add_parser("evaluate", help="test ELBO and importance-sampled log-likelihood")
    e.add_argument("--out", default="runs/vae")
    e.add_argument("--k", type=cli.positive_int, default=500, help="importance samples for log p(x)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--limit", type=cli.positive_int, default=None)
    e.add_argument("--seed", type=cli.seed, default=0)
    s = sub.add_parser("sample", help="a grid of samples from a trained model")
    s.add_argument("--out", default="runs/vae")
    s.add_argument("--n", type=cli.positive_int, default=64)
    s.add_argument("--seed", type=cli.seed, default=0)
    r = sub.add_parser("snr", help="encoder-gradient SNR against k, reparam vs DReG (writes json and png)")
    r.add_argument("--ks", type=cli.positive_int, nargs="+", default=[1, 5, 20, 50], help="values of k")
    r.add_argument("--runs", type=cli.positive_int, default=100, help="gradient estimates per (k, estimator)")
    r.add_argument("--latent", type=cli.positive_int, default=20)
    r.add_argument("--hidden", type=cli.positive_int, default=200)
    r.add_argument("--snr-batch", type=cli.positive_int, default=64,
                   help="the fixed minibatch (first N training images) whose gradient is measured")
    cli.add_training_options(r, epochs=1, batch_size=128, out="runs/snr", resume=False)
    r.set_defaults(limit=10000)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "snr" and args.runs < 2:
        parser().error("--runs: needs at least 2 gradient estimates to measure a spread")
    cli.run_command({"train": train, "evaluate": evaluate, "sample": sample, "snr": snr}[args.command], args)


if __name__ == "__main__":
    main()

"""VAEs with discrete latents, categorical or Bernoulli, trained with a choice of gradient
estimator, to compare the estimators on a real model (Fashion-MNIST, dynamic binarization).

    python -m models.discrete_vae train --estimator nvil --out runs/dvae-nvil
    python -m models.discrete_vae train --model bernoulli --estimator disarm --out runs/dvae-disarm
    python -m models.discrete_vae evaluate --out runs/dvae-nvil
    python -m models.discrete_vae compare --model bernoulli --epochs 3 --out runs/dvae   # every estimator

Two models (``--model``), both with p(x|z) Bernoulli from an MLP decoder on z and q(z|x)
from an MLP encoder giving logits:

  categorical  ``--latents`` D independent categoricals with ``--categories`` K values each
               (one-hot), uniform prior p(z) = K^-D (the default model)
  bernoulli    ``--latents`` D (default 200) independent coins, uniform prior p(z) = 2^-D,
               the setting of the ARM, DisARM and RELAX papers

Most estimators optimise the ELBO = E_q[log p(x|z)] - KL(q || p(z)), the KL analytic
(pathwise); the reconstruction term needs a gradient estimator for z. ``vimco`` optimises
the K-sample bound L_K = E log (1/K) sum_k p(x, z_k) / q(z_k|x) (K = ``--samples``)
instead, declared with ``g.bound``. Every model is evaluated on the same test ELBO.

  estimator   categorical  bernoulli  what
  score-ma        yes         yes     score function, moving-average baseline
  nvil            yes         yes     score function, learned input-dependent baseline with
                                      variance normalisation (Mnih & Gregor 2014); its learning
                                      signal is the whole -log p(x,z)/q(z|x) (a one-sample bound,
                                      the KL inside, normalised with the rest)
  rloo            yes         yes     --samples draws per image, each with the leave-one-out
                                      mean of the others' per-sample ELBO terms as baseline
  vimco           yes         yes     --samples draws, the K-sample bound, VIMCO's per-sample
                                      leave-one-out signals (Mnih & Rezende 2016)
  enumerate   --latents 1     no      exact sum over the K values
  disarm          no          yes     an antithetic pair per image (Dong et al. 2020)
  arm             no          yes     the same pair, ARM's weights (Yin & Zhou 2019)
  relax           no          yes     learned control variate, a small MLP of the relaxed
                                      coins (Grathwohl et al. 2018)
  gumbel          yes         yes     Gumbel-softmax relaxation at --temperature (biased)

  Variants for studies, run only when named: nvil-unnormalised (no variance normalisation),
  nvil-kl-outside (the analytic KL outside the normalised learning signal).

The estimators are the table ``ESTIMATORS`` (name -> factory); a new one is one entry
there, and a factory refuses the models and options it does not suit. Each epoch logs the
variance and SNR of the encoder's gradient estimate on a fixed batch
(scg.diagnostics.gradient_stats), so the estimators can be compared.
"""

if __name__ == "__main__":  # run as a program: Ctrl-C during the imports below ends in one line
    from models.entry import guard_startup, quiet_blas_threads

    guard_startup()
    quiet_blas_threads()

import argparse
import json
import math
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

import scg
import scg.distributions as D
from scg import executors
from models import cli, training

MODELS = ("categorical", "bernoulli")


class DiscreteVAE(scg.nn.Module):
    """Categorical latents. Encoder x (B, 784) -> logits (B, D, K) (or (B, K) when D = 1);
    decoder one-hot z -> pixel logits."""

    kind = "categorical"

    def __init__(self, latents=8, categories=4, hidden=200, rng=None):
        self.latents, self.categories = latents, categories
        self.encoder = scg.nn.MLP([784, hidden, latents * categories], rng=rng)
        self.decoder = scg.nn.MLP([latents * categories, hidden, 784], rng=rng)
        self.baseline_net = scg.nn.MLP([784, 100, 1], rng=rng)  # used by nvil only

    @property
    def latent_size(self):
        """Numbers the decoder reads per draw of z."""
        return self.latents * self.categories

    def logits(self, x):
        h = self.encoder(x)
        return h if self.latents == 1 else h.reshape(h.shape[:-1] + (self.latents, self.categories))

    def posterior(self, logits, relaxable=False):
        """q(z|x): OneHotCategorical, batch (B,) or (B, D), event (K,)."""
        return D.OneHotCategorical(logits=logits)

    def p_x(self, z):
        """p(x|z), one Bernoulli per pixel; z one-hot (..., B, [D,] K) -> batch shape (..., B, 784)."""
        flat = z if self.latents == 1 else z.reshape(z.shape[:-2] + (self.latent_size,))
        return D.Bernoulli(logits=self.decoder(flat))

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels: (..., B)."""
        return self.p_x(z).log_prob(x).sum(-1)

    def log_q(self, logits, z):
        """log q(z|x) per image and draw, (..., B): sum_k z_k log softmax(logits)_k, summed
        over the D latents (written out, elementwise in z, so each draw keeps its own axis)."""
        lp = (z * scg.log_softmax(logits, axis=-1)).sum(-1)
        return lp if self.latents == 1 else lp.sum(-1)

    def log_prior(self):
        """log p(z) of the uniform prior (the same for every z): -D log K."""
        return -self.latents * math.log(self.categories)

    def kl_to_uniform(self, logits):
        """KL(q || uniform) per image: sum over latents of sum_k q_k log q_k + log K."""
        log_q = scg.log_softmax(logits, axis=-1)
        kl = (scg.exp(log_q) * log_q).sum(-1) + math.log(self.categories)
        return kl if self.latents == 1 else kl.sum(-1)


class BernoulliVAE(scg.nn.Module):
    """D Bernoulli latents (coins). Encoder x (B, 784) -> logits (B, D); decoder z (B, D)
    -> pixel logits. ``control`` is RELAX's control variate (relax only)."""

    kind = "bernoulli"

    def __init__(self, latents=200, hidden=200, rng=None):
        self.latents, self.categories = latents, 2
        self.encoder = scg.nn.MLP([784, hidden, latents], rng=rng)
        self.decoder = scg.nn.MLP([latents, hidden, 784], rng=rng)
        self.baseline_net = scg.nn.MLP([784, 100, 1], rng=rng)  # used by nvil only
        self.control = RelaxControl(latents, rng=rng)  # used by relax only

    @property
    def latent_size(self):
        return self.latents

    def logits(self, x):
        return self.encoder(x)

    def posterior(self, logits, relaxable=False):
        """q(z|x): the D coins of an image as one event, Independent(Bernoulli, 1) with
        log-prob (B,), so that DisARM, ARM and RELAX see one cost per image (the papers'
        multivariate form) and RELAX's control may read all D coins of its image. With
        ``relaxable`` the plain Bernoulli (batch (B, D)), which has a relaxation."""
        coins = D.Bernoulli(logits=logits)
        return coins if relaxable else D.Independent(coins, 1)

    def p_x(self, z):
        """p(x|z), one Bernoulli per pixel; z (..., B, D) -> batch shape (..., B, 784)."""
        return D.Bernoulli(logits=self.decoder(z))

    def log_likelihood(self, x, z):
        """log p(x|z) summed over pixels: (..., B)."""
        return self.p_x(z).log_prob(x).sum(-1)

    def log_q(self, logits, z):
        """log q(z|x) per image and draw, (..., B): sum_d z_d a_d - softplus(a_d) for logits a."""
        return (z * logits - scg.softplus(logits)).sum(-1)

    def log_prior(self):
        """log p(z) of the uniform prior: -D log 2."""
        return -self.latents * math.log(2.0)

    def kl_to_uniform(self, logits):
        """KL(q || Bernoulli(1/2)^D) per image: sum_d [p log p + (1 - p) log(1 - p)] + D log 2,
        with log p = -softplus(-a), log(1 - p) = -softplus(a) for the logit a."""
        log_p, log_1mp = -scg.softplus(-logits), -scg.softplus(logits)
        return (scg.exp(log_p) * log_p + scg.exp(log_1mp) * log_1mp).sum(-1) + self.latents * math.log(2.0)


def make_model(kind, latents, categories, hidden, rng=None):
    """A DiscreteVAE (``kind`` "categorical") or BernoulliVAE ("bernoulli")."""
    if kind == "categorical":
        return DiscreteVAE(latents, categories, hidden, rng=rng)
    if kind == "bernoulli":
        return BernoulliVAE(latents, hidden, rng=rng)
    raise ValueError(f"unknown model {kind!r}; choose from {MODELS}")


class _Baseline(scg.nn.Module):
    """NVIL's baseline b(x), shaped to broadcast against the latent's log-prob: (B,) when
    the log-prob is one number per image, (B, 1) when it has a latent axis."""

    def __init__(self, net, per_image):
        self.net, self.per_image = net, per_image

    def forward(self, x):
        b = self.net(x)
        return b[:, 0] if self.per_image else b


def _detached(mlp, x):
    """``mlp(x)`` with its weights' gradients stopped: a function of x only, for a control
    variate that reads the decoder without training it."""
    for layer in mlp.layers:
        if isinstance(layer, scg.nn.Linear):
            x = scg.matmul(x, scg.stop_gradient(layer.weight))
            x = x + scg.stop_gradient(layer.bias) if layer.bias is not None else x
        else:
            x = layer(x)
    return x


class RelaxControl(scg.nn.Module):
    """RELAX's control variate for the Bernoulli model, in the papers' (REBAR-style) form
    ``c(z) = eta * f(sigma(z / T)) + net(sigma(z))`` with f(s) = -log p(x | s) the model's
    own reconstruction cost at the relaxed coins (decoder read with stopped weights, so the
    variance objective trains only eta and net), T = ``temperature``, eta starting at 1.
    z: the D logistic variables of each image (..., B, D) -> (..., B, 1): element i
    depends on image i's coins and pixels only, as RELAX requires. (A network alone would
    start near 0 while f is ~500 nats, and learns that offset only slowly.)"""

    def __init__(self, latents, hidden=50, temperature=0.5, rng=None):
        self.net = scg.nn.MLP([latents, hidden, 1], rng=rng)
        self.eta = scg.nn.Parameter(np.ones(1, dtype=np.float32))
        self.temperature = temperature

    def forward(self, z, x, decoder):
        logits = _detached(decoder, scg.sigmoid(z / self.temperature))
        f = -D.Bernoulli(logits=logits).log_prob(x).sum(-1, keepdims=True)
        return self.eta * f + self.net(scg.sigmoid(z))


class _Control:
    """RELAX's ``control(z, x)``: the model's RelaxControl bound to its decoder. Not a
    Module, so that ``parameters()`` lists the control's own parameters only (eta and net;
    the decoder, reached through a function, is not walked)."""

    def __init__(self, model):
        self.module, self._decoder = model.control, (lambda: model.decoder)

    def __call__(self, z, x):
        return self.module(z, x, self._decoder())

    def parameters(self):
        return self.module.parameters()


# What a factory returns: the estimator of z, draws of z per image (None for one), and
# whether the graph declares the K-sample bound (vimco) instead of the ELBO's costs.
Choice = namedtuple("Choice", "estimator n bound")


def _only(model, kind, name):
    if model.kind != kind:
        other = "categorical" if kind == "bernoulli" else "bernoulli"
        raise ValueError(f"--estimator {name} applies to --model {kind} only (its latents are "
                         f"{'Bernoulli' if kind == 'bernoulli' else 'categorical'}), not --model {other}")


def _draws(options):
    """--draws: decoder evaluations per image per step asked for (None: each estimator's own)."""
    return getattr(options, "draws", None)


def _fixed(name, cost, options, why):
    if _draws(options) not in (None, cost):
        raise ValueError(f"--estimator {name} costs {cost} decoder pass(es) per image ({why}), not --draws "
                         f"{_draws(options)}")


def _multi(name, options):
    if _draws(options) is not None:
        if _draws(options) < 2:
            raise ValueError(f"--estimator {name} needs --draws >= 2 (its baseline leaves one draw out)")
        return _draws(options)
    if options.samples < 2:
        raise ValueError(f"--estimator {name} needs --samples >= 2")
    return options.samples


def _single(options):
    """n for the one-sample estimators (score-ma, gumbel): --draws independent draws averaged."""
    d = _draws(options)
    return d if d and d > 1 else None


def _enumerate(model, options):
    if model.kind != "categorical":
        raise ValueError(f"--estimator enumerate needs --model categorical --latents 1: the support of "
                         f"{model.latents} Bernoulli latents has 2^{model.latents} values")
    if model.latents != 1:
        raise ValueError(f"--estimator enumerate needs --latents 1: the joint support of {model.latents} "
                         f"categoricals has {model.categories}^{model.latents} values")
    _fixed("enumerate", model.categories, options, "one per value of z")
    return Choice(scg.Enumerate(), None, False)


def _nvil(normalize=True, kl_inside=True, name="nvil"):
    # NVIL's learning signal is the whole log p(x, z) - log q(z|x) (Mnih & Gregor 2014), so
    # the KL is in it and normalised with it: the ELBO as a one-sample bound (n=1). With the
    # KL analytic and outside the signal, normalising shrank only the reconstruction's
    # pull on the encoder, and the posterior collapsed towards the prior (the variant
    # nvil-kl-outside keeps that form for studies; nvil-unnormalised drops the normaliser).
    def factory(model, options):
        _fixed(name, 1, options, "its learning signal is the one-sample bound of one draw")
        net = _Baseline(model.baseline_net, per_image=model.kind == "bernoulli" or model.latents == 1)
        baseline = scg.LearnedBaseline(net, normalize=normalize)
        return Choice(scg.ScoreFunction(baseline), 1 if kl_inside else None, kl_inside)
    return factory


def _pair(cls):
    def factory(model, options):
        name = cls.__name__.lower()
        _only(model, "bernoulli", name)
        d = _draws(options) or 2  # one antithetic pair per image, or --draws / 2 pairs
        if d % 2:
            raise ValueError(f"--estimator {name} draws antithetic pairs: --draws must be even, got {d}")
        return Choice(cls(), d, False)
    return factory


def _relax(model, options):
    _only(model, "bernoulli", "relax")
    _fixed("relax", 3, options, "the model at b, and the control at the relaxed z and z~")
    return Choice(scg.RELAX(_Control(model)), None, False)


# name -> factory(model, options) -> Choice. ``options`` is the parsed command line
# (--temperature, --samples, ...); a factory raises ValueError, naming the model or
# options, when they do not suit it.
ESTIMATORS = {
    "score-ma": lambda model, options: Choice(scg.ScoreFunction(scg.MovingAverageBaseline(0.9)), _single(options),
                                              False),
    "nvil": _nvil(),
    "rloo": lambda model, options: Choice(scg.ScoreFunction(scg.LeaveOneOutBaseline()), _multi("rloo", options),
                                          False),
    "vimco": lambda model, options: Choice(scg.VIMCO(), _multi("vimco", options), True),
    "enumerate": _enumerate,
    "disarm": _pair(scg.DisARM),
    "arm": _pair(scg.ARM),
    "relax": _relax,
    "gumbel": lambda model, options: Choice(scg.GumbelSoftmax(options.temperature), _single(options), False),
    # variants for studies: trained only when named (train --estimator, compare --estimators)
    "nvil-unnormalised": _nvil(normalize=False, name="nvil-unnormalised"),
    "nvil-kl-outside": _nvil(kl_inside=False, name="nvil-kl-outside"),
}
VARIANTS = ("nvil-unnormalised", "nvil-kl-outside")


def choose_estimator(name, model, options):
    """The :data:`Choice` of ``ESTIMATORS[name]``; ValueError for an unknown or unsuitable one."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {tuple(ESTIMATORS)}")
    return ESTIMATORS[name](model, options)


def make_estimator(name, model, temperature=0.5, samples=5):
    """The estimator ``name`` for ``model`` (see ``ESTIMATORS``)."""
    return choose_estimator(name, model, argparse.Namespace(temperature=temperature, samples=samples)).estimator


def bound_label(choice):
    """Which bound a run optimises: "ELBO" (also as a one-sample bound) or "K-sample bound"."""
    return f"{choice.n}-sample bound" if choice.bound and choice.n > 1 else "ELBO"


def trainable(model, estimator):
    """The parameters the optimizer moves: encoder, decoder, and the baseline network or
    RELAX's control when the estimator learns one."""
    params = model.encoder.parameters() + model.decoder.parameters()
    baseline = getattr(estimator, "baseline", None)
    if isinstance(baseline, scg.LearnedBaseline):
        params += baseline.module.parameters()
    if isinstance(estimator, scg.RELAX):
        params += estimator.control.parameters()
    return params


class _StepThenUpdate:
    """The optimiser ``opt`` whose ``step()`` then calls ``estimator.update()``: baselines
    apply the statistics recorded while the surrogate was built right after each step
    (training.fit only knows the optimiser). Everything else is ``opt``'s."""

    def __init__(self, opt, estimator):
        self.opt, self.estimator = opt, estimator

    @scg.effect  # a traced step (scg.trace) replays the update with the optimizer's step
    def step(self):
        self.opt.step()
        self.estimator.update()

    def __getattr__(self, name):
        return getattr(self.opt, name)


def build_graph(model, x, estimator, n=None, rng=None, bound=None):
    """One minibatch: a plate over the data and z with the chosen estimator (``n`` draws per
    image). Costs: "reconstruction" (-log p(x|z), per image and draw) and "kl" (per image),
    the negative ELBO; or with ``bound`` the negative K-sample bound "neg_bound" over z's
    K = n draws, log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), shape (K, B).
    ``bound=None``: the bound for scg.VIMCO (which needs one), else the ELBO."""
    if bound is None:
        bound = isinstance(estimator, scg.VIMCO)
    b = x.shape[0]
    g = scg.Graph("discrete_vae", rng=rng)
    with g:
        xin = g.input("x", x)
        with g.plate("data", b):
            logits = g.deterministic("encoder", model.logits(xin))
            q = model.posterior(logits, relaxable=isinstance(estimator, scg.GumbelSoftmax))
            z = g.sample("z", q, estimator=estimator, n=n, context=xin)
            if bound:
                g.bound("neg_bound", model.log_likelihood(xin, z) + model.log_prior() - model.log_q(logits, z), over="z")
            else:
                g.cost("reconstruction", -model.log_likelihood(xin, z))
                g.cost("kl", model.kl_to_uniform(logits))
    return g


def elbo(model, x, samples=20, rng=None):
    """Per-image ELBO (B,), no gradients: the terms of :func:`build_graph`'s ELBO costs, exact
    over z for one categorical, else a Monte Carlo average over ``samples`` hard draws of z.
    (Building the graph under no_grad with scg.Enumerate and reading its objective per image
    gave the same numbers but was 30-50% slower: the graph keeps every intermediate value alive.)"""
    with scg.no_grad():
        xt = scg.Tensor(x)
        logits = model.logits(xt)
        q = model.posterior(logits)
        if model.kind == "categorical" and model.latents == 1:
            z = q.enumerate_support()  # (K, B, K)
            rec = (scg.exp(q.log_prob(z)) * model.log_likelihood(xt, z)).sum(0)
        else:
            z = q.sample((samples,), rng=scg.random.resolve(rng))
            rec = model.log_likelihood(xt, z).mean(0)
        return (rec - model.kl_to_uniform(logits)).data


def encoder_gradient_stats(model, x, estimator, n, runs=20, rng=None, bound=None):
    """(total variance V, SNR) of the encoder's gradient estimate on batch x over ``runs``
    builds: V is the variance summed over every encoder parameter, and the SNR is
    ||E g|| / sqrt(V), one number (per-element ratios of 20 runs are too noisy to average),
    with ||E g||^2 estimated without bias by ||mean||^2 - V / runs (the squared norm of a
    mean of ``runs`` draws overstates it by V / runs: for low SNR the raw ratio is about
    1/sqrt(runs) whatever the estimator); 0 when that is negative. The measurement records
    nothing into stateful baselines (scg.diagnostics.gradient_stats)."""
    stats = scg.diagnostics.gradient_stats(
        lambda: build_graph(model, x, estimator, n, rng=rng, bound=bound), model.encoder.parameters(), runs)
    total = stats.total_variance()
    squared = sum(float((m.astype(np.float64) ** 2).sum()) for m in stats.mean) - total / runs
    return total, math.sqrt(max(squared, 0.0) / total) if total > 0 else math.inf


def encoder_gradient_variance(model, x, estimator, n, runs=20, rng=None):
    """The total variance of :func:`encoder_gradient_stats` (the bound chosen as build_graph does)."""
    return encoder_gradient_stats(model, x, estimator, n, runs, rng)[0]


# ---- the command line -------------------------------------------------------------------


# What evaluate reads of a checkpoint's settings, and what each must be.
CONFIG_SPEC = {
    "model": (f"one of {', '.join(MODELS)}", training.one_of(*MODELS)),
    "latents": ("an integer >= 1", training.positive_int),
    "categories": ("an integer >= 1", training.positive_int),
    "hidden": ("an integer >= 1", training.positive_int),
    "estimator": (f"one of {', '.join(ESTIMATORS)}", training.one_of(*ESTIMATORS)),
    **training.DATA_SPEC,
}
CONFIG_KEYS = ("dataset", "data_dir", "epochs", "batch_size", "lr", "model", "latents", "categories", "hidden",
               "estimator", "samples", "temperature", "draws", "seed", "valid", "limit")
OUTPUTS = ("checkpoint.npz", "metrics.jsonl", "evaluation.json", "learning_curve.png", "graph.svg")
COMPARE_OUTPUTS = ("compare.json", "compare.md", "compare_bound.png", "compare_variance.png")


def parameter_count(model):
    """Number of scalars in ``model`` (every network, used or not: all are checkpointed)."""
    return sum(p.data.size for p in model.parameters())


def _mlp_size(sizes):
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def model_sizes(kind, latents, categories, hidden):
    """(numbers the decoder reads per draw, encoder parameters, all parameters) of
    ``make_model(kind, latents, categories, hidden)``, counted without building it."""
    size = latents * categories if kind == "categorical" else latents
    encoder = _mlp_size([784, hidden, size])
    total = encoder + _mlp_size([size, hidden, 784]) + _mlp_size([784, 100, 1])  # + nvil's baseline
    if kind == "bernoulli":
        total += _mlp_size([latents, 50, 1]) + 1  # RELAX's control: its net and eta
    return size, encoder, total


# Floats per image of a training step's activations, measured with tracemalloc (batch 100-200,
# hidden 16-2000, up to 80000 latent numbers, every estimator): (a, b, c) for
# latent_size * (a + b * draws) + draws * (c * 784 + 5 * hidden), rounded up. RELAX's
# control reads relaxed coins through the decoder and differentiates twice; Gumbel keeps the
# relaxed sample's intermediates; the antithetic pair evaluates both coins.
ACTIVATIONS = {"gumbel": (28, 4, 7), "relax": (110, 4, 28), "disarm": (18, 8, 7), "arm": (18, 8, 7),
               "enumerate": (18, 1, 7)}
ACTIVATIONS_DEFAULT = (18, 4, 7)
DATA_BYTES = 2 * 4 * 784 * 70_000  # the images as float32, and the temporaries of converting them
GRADIENT_RUNS = 20  # encoder_gradient_stats' builds on the fixed batch of PROBE images each epoch
PROBE = 64
ELBO_SAMPLES = 20


def draws_per_image(name, args):
    """Draws of z per image that estimator ``name`` makes in a training step."""
    d = getattr(args, "draws", None)
    return {"rloo": d or args.samples, "vimco": d or args.samples, "disarm": d or 2, "arm": d or 2,
            "enumerate": args.categories, "score-ma": d or 1, "gumbel": d or 1}.get(name, 1)


def decoder_passes(name, args):
    """Decoder evaluations per image in a training step of estimator ``name``: its cost, the
    column compare matches with --draws (RELAX: the model at b, the control at z and z~)."""
    return 3 if name == "relax" else draws_per_image(name, args)


def memory_needed(args, name):
    """Bytes a training run of estimator ``name`` with the settings ``args`` needs at its
    peak, and the parts: parameters with their gradients and Adam's three arrays (20 bytes a
    parameter), the images, and the largest of a training step's activations (with the
    estimator's extra draws), the validation ELBO (ELBO_SAMPLES draws of every validation
    image at once, exact over K for one categorical) and the gradient statistics (each run's
    encoder gradient kept, twice, plus one build on PROBE images)."""
    size, encoder, params = model_sizes(args.model, args.latents, args.categories, args.hidden)
    a, b, c = ACTIVATIONS.get(name, ACTIVATIONS_DEFAULT)
    d = draws_per_image(name, args)

    def step(images):
        return 4 * images * (size * (a + b * d) + d * (c * 784 + 5 * args.hidden))

    n_valid = min(args.valid, max(args.limit // 10, 100)) if args.limit else args.valid
    draws = args.categories if args.model == "categorical" and args.latents == 1 else ELBO_SAMPLES
    parts = {"parameters, gradients and Adam's state": 20 * params,
             "a training step": step(args.batch_size),
             "validation": max(4 * draws * n_valid * (4 * size + 5 * 784 + 2 * args.hidden),
                               4 * 2 * (GRADIENT_RUNS + 1) * encoder + step(PROBE)),
             "the images": DATA_BYTES}
    return parts["parameters, gradients and Adam's state"] + parts["the images"] + max(
        parts["a training step"], parts["validation"]), parts


def check_memory(args, name, copies=1):
    """Refuse up front (before the model is built) a training run of estimator ``name`` that
    needs more memory than is available (see :func:`memory_needed`); ``copies`` runs at once
    (compare's --workers)."""
    total, parts = memory_needed(args, name)
    sizes = f"--latents {args.latents}" + (f" --categories {args.categories}" if args.model == "categorical" else "")
    runs = f"{copies} runs at once of " if copies > 1 else ""
    cli.check_memory(copies * total, f"{runs}training --model {args.model} --estimator {name} with {sizes} "
                                     f"--hidden {args.hidden} --batch-size {args.batch_size}",
                     "choose a smaller --latents, --categories, --hidden, --batch-size or --samples ("
                     + "; ".join(f"{k}: {cli.gib(v)}" for k, v in parts.items()) + ")")


def _resolve_latents(args):
    """--latents defaults to 200 for the Bernoulli model, 8 (train) or 1 (compare) for the categorical."""
    if args.latents is None:
        args.latents = 200 if args.model == "bernoulli" else (1 if args.command == "compare" else 8)
    return args


def train(args):
    check_memory(args, args.estimator)  # before building the model: its parameters alone may not fit
    rng = np.random.default_rng(args.seed)
    scg.manual_seed(args.seed)
    model = make_model(args.model, args.latents, args.categories, args.hidden, rng=rng)
    try:
        choice = choose_estimator(args.estimator, model, args)
    except ValueError as e:
        raise cli.CommandError(str(e)) from None
    estimator, n = choice.estimator, choice.n
    count = parameter_count(model)
    images = training.prepare(args.dataset, args.data_dir, args.valid, args.limit)
    opt = _StepThenUpdate(scg.optim.Adam(trainable(model, estimator), lr=args.lr), estimator)
    probe = training.binarize(images.train[:64], np.random.default_rng(7))

    def validate(epoch):
        t0 = time.perf_counter()
        bound = float(elbo(model, images.valid, rng=np.random.default_rng(epoch)).mean()) if len(images.valid) else None
        variance, snr = encoder_gradient_stats(model, probe, estimator, n, rng=np.random.default_rng(epoch),
                                               bound=choice.bound)
        return dict(valid_bound=bound, encoder_grad_variance=variance, encoder_grad_snr=snr,
                    validate_seconds=time.perf_counter() - t0)

    with cli.run_folder(args.out, overwrite=args.overwrite, outputs=OUTPUTS, can_resume=False) as out:
        cli.check_disk(out, 2 * 12 * count, "a checkpoint (written beside the previous one)")
        history = training.fit(lambda xb: build_graph(model, xb, estimator, n, rng=rng, bound=choice.bound), model,
                               opt, rng, images.train, epochs=args.epochs, batch_size=args.batch_size,
                               validate=validate, out=out, config={k: getattr(args, k) for k in CONFIG_KEYS},
                               kind="discrete_vae", tags=dict(estimator=args.estimator, bound=bound_label(choice)),
                               label=f"{args.estimator} ", trace=args.trace)
        training.plot_curve(history, out / "learning_curve.png")
        build_graph(model, probe[:8], estimator, n, rng=np.random.default_rng(0), bound=choice.bound).render(
            out / "graph.svg", format="svg")
    return history


def evaluate(args):
    model, config, epoch = training.load_model(
        Path(args.out) / "checkpoint.npz", "discrete_vae",
        lambda c: make_model(c.get("model", "categorical"), c["latents"], c["categories"], c["hidden"]),
        config_keys=("latents", "categories", "hidden", "estimator", "dataset", "valid"), config_spec=CONFIG_SPEC)
    x_test = training.prepare(config["dataset"], args.data_dir or config.get("data_dir"), config["valid"],
                              config.get("limit")).test_binary
    test = training.batched_mean(lambda xb, i: elbo(model, xb, rng=np.random.default_rng(i)), x_test, 500)
    result = dict(estimator=config["estimator"], model=config.get("model", "categorical"), epoch=epoch,
                  test_elbo=test, n_test=len(x_test))
    return training.write_evaluation(args.out, result, ("test_elbo",))


def applicable(args):
    """The names in ``ESTIMATORS`` that suit ``args`` (model and options), in table order,
    and {name: why not} for the others."""
    model = make_model(args.model, args.latents, args.categories, 1)
    names, refused = [], {}
    for name in ESTIMATORS:
        try:
            choose_estimator(name, model, args)
            if name in VARIANTS and name not in (getattr(args, "estimators", None) or ()):
                continue
            names.append(name)
        except ValueError as e:
            refused[name] = str(e)
    return names, refused


# What compare reports per estimator: the row's key, the table's header, its format.
COMPARE_METRICS = (("train_bound", "train bound", ".2f"), ("test_elbo", "test ELBO", ".2f"),
                   ("encoder_grad_variance", "encoder grad variance", ".3g"),
                   ("encoder_grad_snr", "encoder grad SNR", ".3g"), ("seconds_per_epoch", "s / epoch", ".3g"))


def _mean_sd(values, fmt):
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(np.mean(values), fmt)} ± {format(np.std(values, ddof=1), fmt)}"


def compare_table(summary):
    """The markdown table of :func:`compare`: one row per estimator, mean ± sd over seeds
    (sample standard deviation) where there are several."""
    lines = ["| estimator | bound optimised | decoder passes / image | seeds | "
             + " | ".join(h for _, h, _ in COMPARE_METRICS) + " |",
             "|---|---|---:|---:|" + "---:|" * len(COMPARE_METRICS)]
    for r in summary:
        cells = [_mean_sd(r[key]["values"], fmt) for key, _, fmt in COMPARE_METRICS]
        lines.append(f"| {r['estimator']} | {r['bound']} | {r['decoder_passes']} | {len(r['seeds'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# What a finished compare job must have been run with, to be reused when a study is resumed.
JOB_KEYS = tuple(k for k in CONFIG_KEYS if k != "data_dir")


def compare_job(sub):
    """One job of :func:`compare`: train estimator ``sub.estimator`` from seed ``sub.seed`` in
    ``sub.out``, evaluate it, and write its row to ``sub.out/row.json`` (atomically, last: a
    folder without it is an unfinished job). Returns the row. Defined at module level so
    that worker processes and Dask workers can run it."""
    history = train(sub)
    result = evaluate(argparse.Namespace(out=sub.out, data_dir=sub.data_dir))
    last = history[-1]
    row = dict(estimator=sub.estimator, seed=sub.seed, bound=last["bound"], decoder_passes=decoder_passes(
        sub.estimator, sub), train_bound=last["train_bound"], test_elbo=result["test_elbo"],
        encoder_grad_variance=last["encoder_grad_variance"], encoder_grad_snr=last["encoder_grad_snr"],
        seconds_per_epoch=float(np.mean([h["seconds"] - h["validate_seconds"] for h in history])),
        history=history, job={k: getattr(sub, k) for k in JOB_KEYS})
    cli.atomic_write(Path(sub.out) / "row.json", lambda tmp: Path(tmp).write_text(json.dumps(row, indent=1)))
    return row


def _finished(sub):
    """The row of a job already finished in ``sub.out`` with the same settings; None if there is
    none (or an unreadable one: an unfinished job is rerun); CommandError if a finished job of
    other settings is there (replaced only with --overwrite)."""
    path = Path(sub.out) / "row.json"
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    wanted = {k: getattr(sub, k) for k in JOB_KEYS}
    if row.get("job") == wanted:
        return row
    old = row.get("job") or {}
    changed = [f"--{k.replace('_', '-')} {old.get(k)!r} there, {wanted[k]!r} now" for k in JOB_KEYS
               if old.get(k) != wanted[k]]
    raise cli.CommandError(f"{sub.out} holds a finished job of other settings ({'; '.join(changed)}); pass "
                           f"--overwrite to replace it, or choose another --out")


def summarise(names, rows):
    """Per estimator (in ``names`` order, those with rows): every metric's per-seed values with
    their mean and sd, and the per-epoch curves of every seed."""
    summary = []
    for name in names:
        mine = [r for r in rows if r["estimator"] == name]
        if not mine:
            continue
        entry = dict(estimator=name, bound=mine[0]["bound"], decoder_passes=mine[0]["decoder_passes"],
                     seeds=[r["seed"] for r in mine], histories=[r["history"] for r in mine])
        for key, _, _ in COMPARE_METRICS:
            values = [float(r[key]) for r in mine]
            entry[key] = dict(mean=float(np.mean(values)),
                              sd=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, values=values)
        summary.append(entry)
    return summary


def plot_compare(summary, out, model):
    """compare_bound.png (validation ELBO per epoch, or the training bound with --valid 0) and
    compare_variance.png (encoder gradient variance, log scale): mean over seeds, error bars
    one sd."""
    plt = training.pyplot()
    no_valid = all(h.get("valid_bound") is None for s in summary for hist in s["histories"] for h in hist)
    bound_key, bound_label = ("train_bound", "training bound (nats)") if no_valid else \
        ("valid_bound", "validation ELBO (nats)")
    for key, ylabel, fname, log in ((bound_key, bound_label, "compare_bound.png", False),
                                    ("encoder_grad_variance", "encoder gradient total variance",
                                     "compare_variance.png", True)):
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in summary:
            values = np.array([[h[key] for h in hist] for hist in s["histories"]], dtype=float)  # (seeds, epochs)
            epochs = [h["epoch"] for h in s["histories"][0]]
            sd = values.std(axis=0, ddof=1) if len(values) > 1 else None
            ax.errorbar(epochs, values.mean(axis=0), yerr=sd, fmt="o-", capsize=3, label=s["estimator"])
        if log:
            ax.set_yscale("log")
        seeds = max(len(s["seeds"]) for s in summary)
        ax.set(xlabel="epoch", ylabel=ylabel,
               title=f"{model} latents" + (f", mean ± sd over {seeds} seeds" if seeds > 1 else ""))
        ax.legend(fontsize=8)
        fig.tight_layout()
        training.save_figure(fig, out / fname)


def compare(args):
    """Train every estimator that applies to the model (or those of --estimators) from each of
    --seeds seeds for the same epochs, each job in ``out/<name>/seed<i>``; write compare.json
    (per estimator: every metric per seed, mean and sd; the failed jobs), compare.md (the
    table: bound optimised, decoder passes per image per step, last train bound, test ELBO,
    encoder-gradient variance and SNR on the fixed batch after the last epoch, training
    seconds per epoch without the measurements) and the plots compare_bound.png and
    compare_variance.png.

    Seeds: seed i of every estimator is ``spawn_seeds(--seed, --seeds)[i]``, so seed i starts
    every estimator from the same weights and minibatch order, and a job's numbers do not
    depend on which executor runs it (--workers, --scheduler). A job whose folder holds its
    row.json with the same settings is reused, so an interrupted study resumes where it
    stopped (--overwrite reruns everything)."""
    out = Path(args.out)
    check_memory(args, "score-ma")  # the least any estimator needs; before applicable() builds a model
    names, refused = applicable(args)
    if args.estimators:
        unknown = [n for n in args.estimators if n not in ESTIMATORS]
        if unknown:
            raise cli.CommandError(f"--estimators: unknown {', '.join(unknown)}; choose from {', '.join(ESTIMATORS)}")
        for n in args.estimators:
            if n in refused:
                raise cli.CommandError(f"--estimators {n}: {refused[n]}")
        names = [n for n in names if n in args.estimators]
        refused = {}
    concurrent = 1 if args.scheduler else max(args.workers, 1)
    for name in names:  # every run is checked before the first trains
        check_memory(args, name, copies=min(concurrent, args.seeds * len(names)))
    out.mkdir(parents=True, exist_ok=True)
    for name, why in refused.items():
        print(f"skipping {name}: {why}", flush=True)
    seeds = executors.spawn_seeds(args.seed, args.seeds)
    jobs, rows = [], []
    for name in names:
        for i, seed in enumerate(seeds):
            sub = argparse.Namespace(**{**vars(args), "estimator": name, "seed": seed,
                                        "out": str(out / name / f"seed{i}"), "overwrite": True})
            done = None if args.overwrite else _finished(sub)  # refuses a job of other settings
            if done is not None:
                print(f"reusing {name} seed {i}: finished in {sub.out}", flush=True)
                rows.append(done)
            else:
                jobs.append(((name, i), (sub,)))
    try:
        with executors.executor(args.workers, args.scheduler) as pool:
            results, failures = executors.run_jobs(compare_job, jobs, pool, desc="compare jobs")
    except RuntimeError as e:
        raise cli.CommandError(str(e)) from None
    rows += results.values()
    order = {(n, s): k for k, (n, s) in enumerate((n, s) for n in names for s in seeds)}
    rows.sort(key=lambda r: order[(r["estimator"], r["seed"])])
    summary = summarise(names, rows)
    failed = [dict(estimator=name, seed_index=i, error=f.error) for (name, i), f in failures.items()]
    cli.atomic_write(out / "compare.json", lambda tmp: Path(tmp).write_text(json.dumps(
        dict(config={k: getattr(args, k) for k in JOB_KEYS if k not in ("estimator", "seed")}, seed=args.seed,
             seeds=seeds, estimators=summary, failed=failed), indent=1)))
    table = compare_table(summary)
    cost = f", --draws {args.draws} decoder passes per image per step" if args.draws else ""
    cli.atomic_write(out / "compare.md", lambda tmp: Path(tmp).write_text(
        f"Model {args.model}, {args.latents} latents, {args.epochs} epoch(s), --limit {args.limit}, "
        f"--seed {args.seed}, {args.seeds} seed(s){cost}. Test ELBO for every row; the train bound is the "
        f"bound the row optimises" + ("; mean ± sd over seeds" if args.seeds > 1 else "") + ".\n\n" + table))
    if summary:
        plot_compare(summary, out, args.model)
    print(table, end="")
    if failed:
        raise cli.CommandError(f"{len(failed)} of {len(jobs)} jobs failed ("
                               + "; ".join(f"{f['estimator']} seed {f['seed_index']}: {f['error']}" for f in failed)
                               + "); the others are in compare.json, and running the same command again reruns "
                                 "only the failed jobs")
    return summary


def parser():
    ap = argparse.ArgumentParser(prog="python -m models.discrete_vae", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for cmd in ("train", "compare"):
        t = sub.add_parser(cmd, help="train one estimator" if cmd == "train" else "train and compare all")
        if cmd == "train":
            t.add_argument("--estimator", default="nvil", choices=tuple(ESTIMATORS))
        t.add_argument("--model", default="categorical", choices=MODELS)
        t.add_argument("--latents", type=cli.positive_int, default=None,
                       help="default 200 (bernoulli), 8 (categorical train), 1 (categorical compare)")
        t.add_argument("--categories", type=cli.positive_int, default=16 if cmd == "compare" else 4,
                       help="values per categorical latent")
        t.add_argument("--hidden", type=cli.positive_int, default=200)
        t.add_argument("--samples", type=cli.positive_int, default=5, help="draws per image for rloo and vimco")
        t.add_argument("--temperature", type=cli.float32_range(), default=0.5,
                       help="for gumbel: > 0, finite, and not so small that it is 0 in float32")
        t.add_argument("--draws", type=cli.positive_int, default=None,
                       help="decoder passes per image per step (equal cost): rloo and vimco draw that many, "
                            "score-ma and gumbel average that many, disarm and arm draw half as many pairs; "
                            "nvil (1), relax (3) and enumerate (K) cost what they cost and are refused otherwise")
        if cmd == "compare":
            t.add_argument("--estimators", type=lambda s: [n.strip() for n in s.split(",") if n.strip()],
                           default=None, help="comma-separated names to compare (default: every one that applies)")
            t.add_argument("--seeds", type=cli.positive_int, default=1,
                           help="seeds per estimator (from SeedSequence(--seed)); the table gives mean ± sd")
            t.add_argument("--workers", type=cli.nonnegative_int, default=0,
                           help="local worker processes running the jobs (0: one after another in this process)")
            t.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="run the jobs on a running Dask cluster (tcp://host:8786); needs dask.distributed")
        cli.add_training_options(t, epochs=10 if cmd == "train" else 3, batch_size=100, out="runs/dvae",
                                 resume=False)
    e = sub.add_parser("evaluate", help="test ELBO of a trained run")
    e.add_argument("--out", default="runs/dvae")
    e.add_argument("--data-dir", default=None)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command != "evaluate":
        _resolve_latents(args)
    cli.run_command({"train": train, "evaluate": evaluate, "compare": compare}[args.command], args)


if __name__ == "__main__":
    main()

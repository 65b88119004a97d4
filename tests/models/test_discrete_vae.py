"""The discrete-latent VAEs (categorical and Bernoulli): every applicable estimator trains on
real data and logs its gradient variance; unsuitable ones are refused; compare writes its
table; baselines move because update() is called; enumeration and the bounds are exact."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scg
import scg.distributions as D
from models import discrete_vae as dv

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--limit", "300", "--hidden", "16", "--samples", "3", "--valid", "200"]
SIZES = {"categorical": ["--latents", "3", "--categories", "4"], "bernoulli": ["--latents", "12"]}
APPLICABLE = {"categorical": ("score-ma", "nvil", "rloo", "vimco", "enumerate", "gumbel"),
              "bernoulli": ("score-ma", "nvil", "rloo", "vimco", "disarm", "arm", "relax", "gumbel")}


pytestmark = pytest.mark.usefixtures("data_files_read_once")  # see conftest.py


@pytest.fixture(autouse=True)
def _no_baselines_discarded_by_other_tests(monkeypatch):
    """The warning about discarded stateful baselines counts them process-wide; baselines other
    tests in this worker dropped must not make these runs warn."""
    from scg.estimators import score_function

    monkeypatch.setattr(score_function, "_DISCARDED", [0, False])


def run(*args, check=True):
    return subprocess.run([sys.executable, "-m", "models.discrete_vae", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=check)


def args_for(command, *argv):
    args = dv.parser().parse_args([command, *argv])
    return dv._resolve_latents(args)


@pytest.fixture(scope="module")
def bernoulli_compare(tmp_path_factory):
    """compare over every Bernoulli estimator, one epoch of TINY each: (its folder, its summary).
    Each job is ``dv.train`` with the settings test_every_applicable_estimator_trains_one_epoch
    gives that estimator (only the seed differs), so those tests read its runs' rows."""
    from scg.estimators import score_function

    out = tmp_path_factory.mktemp("compare") / "cmp"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(score_function, "_DISCARDED", [0, False])  # as _no_baselines_discarded_by_other_tests does
        args = args_for("compare", "--model", "bernoulli", "--epochs", "1", *TINY, *SIZES["bernoulli"],
                        "--out", str(out))
        return out, dv.compare(args)


@pytest.mark.parametrize("model, estimator", [(m, e) for m, names in APPLICABLE.items() for e in names])
def test_every_applicable_estimator_trains_one_epoch(model, estimator, tmp_path, request):
    sizes = ["--latents", "1", "--categories", "6"] if estimator == "enumerate" else SIZES[model]
    if model == "bernoulli":  # the run compare made of it (the same dv.train, the same settings)
        out, _ = request.getfixturevalue("bernoulli_compare")
        (row,) = json.loads((out / estimator / "seed0" / "row.json").read_text())["history"]
        assert json.loads((out / estimator / "seed0" / "metrics.jsonl").read_text()) == row
    else:
        args = args_for("train", "--model", model, "--estimator", estimator, "--epochs", "1", *TINY, *sizes,
                        "--out", str(tmp_path / "run"))
        (row,) = dv.train(args)
    for key in ("train_bound", "valid_bound", "encoder_grad_variance", "encoder_grad_snr"):
        assert np.isfinite(row[key]), (key, row)
    # -log p(x|z) of 784 pixels lies between 0 and a few hundred nats per pixel row at worst
    assert -2000 < row["train_bound"] < 0 and -2000 < row["valid_bound"] < 0
    assert row["encoder_grad_variance"] > 0
    assert row["bound"] == ("3-sample bound" if estimator == "vimco" else "ELBO")


def test_compare_writes_one_row_per_applicable_estimator(bernoulli_compare):
    out, summary = bernoulli_compare
    assert [s["estimator"] for s in summary] == list(APPLICABLE["bernoulli"])
    for name in dv.COMPARE_OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    rows = json.loads((out / "compare.json").read_text())["estimators"]
    assert [r["estimator"] for r in rows] == list(APPLICABLE["bernoulli"])
    table = [line for line in (out / "compare.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| estimator | bound optimised | decoder passes / image | seeds | train bound | test ELBO")
    assert [line.split("|")[1].strip() for line in table[1:]] == list(APPLICABLE["bernoulli"])
    assert [line.split("|")[2].strip() for line in table[1:]] == [
        "3-sample bound" if n == "vimco" else "ELBO" for n in APPLICABLE["bernoulli"]]
    # each estimator's cost: 3 draws for rloo and vimco (--samples 3), a pair for disarm and arm,
    # the model and two control passes for relax, one draw otherwise
    assert [int(line.split("|")[3]) for line in table[1:]] == [
        {"rloo": 3, "vimco": 3, "disarm": 2, "arm": 2, "relax": 3}.get(n, 1) for n in APPLICABLE["bernoulli"]]
    for r in rows:
        evaluation = json.loads((out / r["estimator"] / "seed0" / "evaluation.json").read_text())
        assert r["test_elbo"]["values"] == [evaluation["test_elbo"]] and r["seconds_per_epoch"]["mean"] > 0


@pytest.mark.parametrize("model, estimator, extra, message", [
    ("categorical", "disarm", [], "applies to --model bernoulli only"),
    ("categorical", "arm", [], "applies to --model bernoulli only"),
    ("categorical", "relax", [], "applies to --model bernoulli only"),
    ("bernoulli", "enumerate", [], "2^12 values"),
    ("categorical", "enumerate", ["--latents", "3"], "needs --latents 1"),
    ("categorical", "vimco", ["--samples", "1"], "--samples >= 2"),
    ("bernoulli", "rloo", ["--samples", "1"], "--samples >= 2"),
])
def test_unsuitable_combinations_are_refused(model, estimator, extra, message, tmp_path):
    argv = ["--model", model, "--estimator", estimator, *TINY, *SIZES[model], *extra]
    with pytest.raises(ValueError, match=message.replace("^", r"\^")):
        args = args_for("train", *argv)
        dv.choose_estimator(estimator, dv.make_model(model, args.latents, args.categories, 4), args)
    r = run("train", *argv, "--out", str(tmp_path / "run"), check=False)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_train_then_evaluate_from_the_command_line(tmp_path):
    out = tmp_path / "disarm"
    run("train", "--model", "bernoulli", "--estimator", "disarm", "--epochs", "2", *TINY, *SIZES["bernoulli"],
        "--out", str(out))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_bound"] > rows[0]["train_bound"]
    assert (out / "graph.svg").read_text().count("<svg") == 1
    result = json.loads(run("evaluate", "--out", str(out)).stdout.strip().splitlines()[-1])
    assert result["estimator"] == "disarm" and result["model"] == "bernoulli" and -600 < result["test_elbo"] < 0


def test_training_calls_update_so_the_moving_average_baseline_moves(tmp_path, monkeypatch):
    chosen = []
    original = dv.choose_estimator

    def spy(name, model, options):
        choice = original(name, model, options)
        chosen.append(choice)
        return choice

    monkeypatch.setattr(dv, "choose_estimator", spy)
    # 200 images in batches of 100: two steps, two updates
    args = args_for("train", "--estimator", "score-ma", "--epochs", "1", *TINY, *SIZES["categorical"],
                    "--limit", "200", "--batch-size", "100", "--out", str(tmp_path / "run"))
    dv.train(args)
    average = chosen[0].estimator.baseline.average
    avg, count = average.state["z"]
    assert count == 2
    # the baseline is the mean -log p(x|z) per image: hundreds of nats, not the 0 it starts at
    assert 50 < average.value("z") < 1000

    # the variance measurement records nothing (it may run between a step and its update());
    # a surrogate built as in training records, and update() applies it
    model = dv.DiscreteVAE(3, 4, 16, rng=np.random.default_rng(0))
    est = dv.make_estimator("score-ma", model)
    x = (np.random.default_rng(1).random((8, 784)) < 0.3).astype(np.float32)
    dv.encoder_gradient_stats(model, x, est, None, runs=3, rng=np.random.default_rng(2))
    est.update()
    assert est.baseline.average.value("z") == 0.0
    dv.build_graph(model, x, est, rng=np.random.default_rng(3)).surrogate()
    assert est.baseline.average.value("z") == 0.0
    est.update()
    assert est.baseline.average.value("z") > 0


def test_enumeration_has_no_variance_and_score_function_the_most():
    rng = np.random.default_rng(0)
    model = dv.DiscreteVAE(latents=1, categories=6, hidden=32, rng=rng)
    x = (rng.random((32, 784)) < 0.3).astype(np.float32)
    var = {name: dv.encoder_gradient_variance(model, x, dv.make_estimator(name, model, 0.5),
                                              3 if name == "rloo" else None, runs=10,
                                              rng=np.random.default_rng(1))
           for name in ("enumerate", "score-ma", "rloo")}
    assert var["enumerate"] < 1e-6 * var["score-ma"]
    assert var["rloo"] < var["score-ma"]


def test_exact_elbo_with_one_categorical_matches_enumeration_by_hand():
    rng = np.random.default_rng(0)
    model = dv.DiscreteVAE(latents=1, categories=4, hidden=16, rng=rng)
    x = (rng.random((3, 784)) < 0.3).astype(np.float32)
    with scg.no_grad():
        logits = model.logits(scg.Tensor(x)).data
        q = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
        rec = np.stack([model.log_likelihood(scg.Tensor(x), scg.Tensor(np.tile(np.eye(4, dtype=np.float32)[k], (3, 1))))
                        .data for k in range(4)], axis=1)
    expected = (q * rec).sum(1) - (q * np.log(q)).sum(1) - np.log(4)
    np.testing.assert_allclose(dv.elbo(model, x), expected, rtol=1e-5)


def test_bernoulli_kl_and_log_q_match_enumeration():
    rng = np.random.default_rng(0)
    model = dv.BernoulliVAE(latents=3, hidden=8, rng=rng)
    x = (rng.random((2, 784)) < 0.3).astype(np.float32)
    with scg.no_grad():
        logits = model.logits(scg.Tensor(x))
        q = D.Independent(D.Bernoulli(logits=logits), 1)
        p = 1 / (1 + np.exp(-logits.data.astype(np.float64)))
        kl = np.zeros(2)
        for bits in itertools.product([0.0, 1.0], repeat=3):
            z = np.array(bits)
            qz = np.prod(np.where(z == 1, p, 1 - p), axis=1)  # (2,)
            kl += qz * (np.log(qz) - 3 * np.log(0.5))
            zt = scg.Tensor(np.tile(z.astype(np.float32), (2, 1)))
            np.testing.assert_allclose(model.log_q(logits, zt).data, np.log(qz), rtol=1e-5)
            np.testing.assert_allclose(model.log_q(logits, zt).data, q.log_prob(zt).data, rtol=1e-5)
        np.testing.assert_allclose(model.kl_to_uniform(logits).data, kl, rtol=1e-4)


def test_vimco_graph_declares_the_k_sample_bound():
    rng = np.random.default_rng(0)
    model = dv.BernoulliVAE(latents=4, hidden=8, rng=rng)
    x = (rng.random((5, 784)) < 0.3).astype(np.float32)
    g = dv.build_graph(model, x, scg.VIMCO(), n=3, rng=np.random.default_rng(1))
    z = g.nodes["z"].value.data  # (3, 5, 4)
    with scg.no_grad():
        logits = model.logits(scg.Tensor(x)).data.astype(np.float64)
        ll = model.log_likelihood(scg.Tensor(x), scg.Tensor(z)).data
    log_q = (z * logits - np.logaddexp(0, logits)).sum(-1)
    log_w = ll + 4 * np.log(0.5) - log_q
    expected = -(np.logaddexp.reduce(log_w, axis=0) - np.log(3)).sum()
    np.testing.assert_allclose(g.surrogate().item(), expected, rtol=1e-4)


def test_relax_trains_its_control_and_not_the_decoder_through_it():
    rng = np.random.default_rng(0)
    model = dv.BernoulliVAE(latents=6, hidden=8, rng=rng)
    est = dv.make_estimator("relax", model)
    control, dec = model.control.parameters(), model.decoder.parameters()
    params = dv.trainable(model, est)
    assert [id(p) for p in params] == [id(p) for p in model.encoder.parameters() + dec + control]
    x = (rng.random((4, 784)) < 0.3).astype(np.float32)
    g = dv.build_graph(model, x, est, rng=np.random.default_rng(1))
    grads = scg.grad(g.surrogate(), control + dec)
    assert all(np.abs(gr.data).sum() > 0 for gr in grads[: len(control)])  # the variance objective reaches them
    # the decoder's gradient is the ELBO's alone, -d log p(x|z) at the drawn z: the control
    # reads the decoder with stopped weights
    z = scg.Tensor(g.nodes["z"].value.data)
    expected = scg.grad((-model.log_likelihood(scg.Tensor(x), z)).sum(), dec)
    for got, want in zip(grads[len(control):], expected):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-4, atol=1e-4)


def test_snr_is_debiased_for_the_number_of_runs(monkeypatch):
    # gradient_stats replaced by 20 draws built so that their mean m and variance V are exact:
    # the debiased SNR is sqrt(||m||^2 - V / 20) / sqrt(V); the raw ||m|| / sqrt(V) is larger
    runs = 20
    noise = np.random.default_rng(0).standard_normal((runs, 2))
    noise -= noise.mean(0)
    noise /= noise.std(0, ddof=1)  # mean 0, variance 1 per element: V = 2
    draws = {}
    monkeypatch.setattr(scg.diagnostics, "gradient_stats",
                        lambda build, params, n: scg.diagnostics.GradientStats([draws["g"]]))
    model = dv.DiscreteVAE(1, 2, 4, rng=np.random.default_rng(0))
    for signal2, expected in ((2 / runs, 0.0), (2 / runs + 8.0, 2.0)):  # ||m||^2
        draws["g"] = noise + np.sqrt(signal2 / 2)
        variance, snr = dv.encoder_gradient_stats(model, None, None, None, runs=runs)
        assert variance == pytest.approx(2.0)
        assert snr == pytest.approx(expected, abs=1e-6), (snr, np.sqrt(signal2 / 2))

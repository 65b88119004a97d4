"""The discrete-latent VAE: every estimator trains on real data and logs its gradient
variance; enumeration is exact; bad arguments get clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scg
from models import discrete_vae as dv

ROOT = Path(__file__).resolve().parents[2]


def run(*args, check=True):
    return subprocess.run([sys.executable, "-m", "models.discrete_vae", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=check)


@pytest.mark.parametrize("estimator, extra", [("score-ma", []), ("nvil", []), ("vimco", ["--samples", "3"]),
                                              ("gumbel", []), ("enumerate", ["--latents", "1", "--categories", "8"])])
def test_every_estimator_trains_and_logs_variance(estimator, extra, tmp_path):
    out = tmp_path / estimator
    run("train", "--estimator", estimator, "--epochs", "2", "--limit", "1500", "--hidden", "64", *extra,
        "--out", str(out))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert rows[1]["valid_bound"] > rows[0]["valid_bound"] - 1.0  # learning, not diverging
    assert rows[1]["train_bound"] > rows[0]["train_bound"]
    assert all(np.isfinite(r["encoder_grad_variance"]) and r["encoder_grad_variance"] >= 0 for r in rows)
    assert (out / "graph.svg").read_text().count("<svg") == 1
    result = json.loads(run("evaluate", "--out", str(out)).stdout.strip().splitlines()[-1])
    assert result["estimator"] == estimator and -600 < result["test_elbo"] < 0


def test_enumeration_has_no_variance_and_score_function_the_most():
    rng = np.random.default_rng(0)
    model = dv.DiscreteVAE(latents=1, categories=6, hidden=32, rng=rng)
    x = (rng.random((32, 784)) < 0.3).astype(np.float32)
    var = {name: dv.encoder_gradient_variance(model, x, dv.make_estimator(name, model, 0.5),
                                              3 if name == "vimco" else None, runs=10,
                                              rng=np.random.default_rng(1))
           for name in ("enumerate", "score-ma", "vimco")}
    assert var["enumerate"] < 1e-6 * var["score-ma"]
    assert var["vimco"] < var["score-ma"]


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


def test_invalid_arguments():
    r = run("train", "--estimator", "enumerate", "--latents", "3", "--limit", "500", check=False)
    assert r.returncode != 0 and "needs --latents 1" in r.stderr
    r = run("train", "--estimator", "vimco", "--samples", "1", check=False)
    assert r.returncode != 0 and "--samples >= 2" in r.stderr
    r = run("train", "--estimator", "reinforce", check=False)
    assert r.returncode != 0 and "invalid choice" in r.stderr

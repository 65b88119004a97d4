"""The VAE and IWAE on real Fashion-MNIST: the bound improves, resume is exact, the CLI
writes valid outputs and rejects bad arguments."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import scg
from models import vae

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def run(*args, check=True):
    return subprocess.run([sys.executable, "-m", "models.vae", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=check)


def history(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    run("train", "--epochs", "2", "--limit", "3000", "--hidden", "100", "--out", str(out))
    return out


def test_training_improves_the_bound(trained):
    h = history(trained)
    assert len(h) == 2
    # A bound per image around -540 nats at initialization (784 pixels at log 2); it must climb.
    assert h[1]["valid_bound"] > h[0]["valid_bound"]
    assert h[1]["train_bound"] > h[0]["train_bound"]
    assert -400 < h[1]["valid_bound"] < 0


def test_outputs_exist_and_are_valid(trained):
    for name in ("learning_curve.png", "samples.png", "reconstructions.png", "latent.png"):
        data = (trained / name).read_bytes()
        assert data[:8] == PNG, name
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert w > 100 and h > 100, name
    root = ET.parse(trained / "graph.svg").getroot()
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "observed" in text and "Bernoulli" in text and "kl" in text and "Normal" in text


def test_evaluate_reports_elbo_below_iwae_estimate(trained):
    r = run("evaluate", "--out", str(trained), "--k", "20")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["test_log_likelihood"] > result["test_elbo"]  # L_20 >= ELBO in expectation
    assert json.loads((trained / "evaluation.json").read_text())["k"] == 20


def test_sample_command_writes_a_grid(trained, tmp_path):
    r = run("sample", "--out", str(trained), "--n", "16")
    assert "samples.png" in r.stdout
    assert (trained / "samples.png").read_bytes()[:8] == PNG


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--limit", "1500", "--hidden", "50", "--latent", "5"]
    run("train", "--epochs", "2", *common, "--out", str(a))
    run("train", "--epochs", "1", *common, "--out", str(b))
    r = run("train", "--epochs", "2", *common, "--out", str(b), "--resume")
    assert "resuming after epoch 1" in r.stdout
    ha, hb = history(a), history(b)
    for key in ("train_bound", "valid_bound"):
        assert ha[1][key] == hb[1][key]
    with np.load(a / "checkpoint.npz") as fa, np.load(b / "checkpoint.npz") as fb:
        for k in fa.files:
            if k != "meta":
                np.testing.assert_array_equal(fa[k], fb[k])


def test_resume_with_other_settings_is_refused(trained):
    r = run("train", "--epochs", "3", "--limit", "3000", "--hidden", "50", "--out", str(trained), "--resume",
            check=False)
    assert r.returncode != 0 and "different settings" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "0"], "--epochs: must be a positive integer"),
        (["train", "--lr", "-1"], "--lr: must be positive"),
        (["train", "--dataset", "cifar"], "invalid choice"),
        (["evaluate", "--out", "/nonexistent/run"], "no checkpoint"),
    ],
)
def test_invalid_arguments_get_clear_errors(args, message):
    r = run(*args, check=False)
    assert r.returncode != 0
    assert message in r.stderr


def test_corrupt_checkpoint_is_reported(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"not a checkpoint")
    r = run("evaluate", "--out", str(tmp_path), check=False)
    assert r.returncode != 0 and "not a readable scg checkpoint" in r.stderr


def test_iwae_bound_is_tighter_and_graph_has_sample_axis():
    rng = np.random.default_rng(0)
    model = vae.VAE(hidden=32, latent=4, rng=rng)
    x = (rng.random((64, 784)) < 0.3).astype(np.float32)
    elbo = vae.bound(model, x, k=1, rng=np.random.default_rng(1)).mean()
    l50 = vae.bound(model, x, k=50, rng=np.random.default_rng(1)).mean()
    assert l50 > elbo
    g = vae.build_graph(model, x[:8], k=5, rng=np.random.default_rng(0))
    assert g.nodes["z"].value.shape == (5, 8, 4)
    assert g.nodes["neg_iwae"].value.shape == (8,)


def test_analytic_and_monte_carlo_kl_agree_in_expectation():
    rng = np.random.default_rng(0)
    model = vae.VAE(hidden=32, latent=4, rng=rng)
    x = (rng.random((16, 784)) < 0.3).astype(np.float32)
    analytic = vae.build_graph(model, x, kl="analytic", rng=np.random.default_rng(0))
    kl_a = analytic.nodes["kl"].value.data
    draws = np.array([vae.build_graph(model, x, kl="mc", rng=np.random.default_rng(s)).nodes["kl"].value.data
                      for s in range(400)])
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - kl_a) <= 4 * se + 1e-6)


def test_gradients_flow_to_every_parameter():
    rng = np.random.default_rng(0)
    model = vae.VAE(hidden=16, latent=3, rng=rng)
    x = (rng.random((8, 784)) < 0.3).astype(np.float32)
    loss = vae.build_graph(model, x, rng=rng).surrogate()
    grads = scg.grad(loss, model.parameters())
    assert all(np.abs(g.data).sum() > 0 for g in grads)
    assert all(g.dtype == np.float32 for g in grads)

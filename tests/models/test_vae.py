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


pytestmark = pytest.mark.usefixtures("data_files_read_once")  # see conftest.py


def run(*args, check=True):
    return subprocess.run([sys.executable, "-m", "models.vae", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=check)


def main(capsys, *args):
    """The command's main() in this process, its stdout returned: for tests about what a run
    computes and writes (a launch costs ~1 s of imports; the command line itself, exit codes and
    one-line messages, is tested with ``run``)."""
    capsys.readouterr()
    vae.main([str(a) for a in args])
    return capsys.readouterr().out


def main_refused(capsys, *args):
    """main() of a run that must be refused: (exit status, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        vae.main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


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


def test_evaluate_reports_elbo_below_iwae_estimate(trained, capsys):
    result = json.loads(main(capsys, "evaluate", "--out", trained, "--k", "20").strip().splitlines()[-1])
    assert result["test_log_likelihood"] > result["test_elbo"]  # L_20 >= ELBO in expectation
    assert json.loads((trained / "evaluation.json").read_text())["k"] == 20


def test_sample_command_writes_a_grid(trained, capsys):
    assert "samples.png" in main(capsys, "sample", "--out", trained, "--n", "16")
    assert (trained / "samples.png").read_bytes()[:8] == PNG


def test_resume_reproduces_the_uninterrupted_run(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--limit", "600", "--hidden", "20", "--latent", "4"]  # bit-for-bit equality at any size
    # in one process: nothing the first runs leave behind (trace caches, the library's random
    # state) may leak into the resumed run either
    main(capsys, "train", "--epochs", "2", *common, "--out", a)
    main(capsys, "train", "--epochs", "1", *common, "--out", b)
    assert "resuming after epoch 1" in main(capsys, "train", "--epochs", "2", *common, "--out", b, "--resume")
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
        (["train", "--lr", "-1"], "--lr: must be a finite number"),
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
    # 400 independent draws per image from one graph of the batch tiled 400 times: the KL cost
    # is per datapoint, and z is drawn afresh for every row
    tiled = vae.build_graph(model, np.tile(x, (400, 1)), kl="mc", rng=np.random.default_rng(0))
    draws = tiled.nodes["kl"].value.data.reshape(400, len(x))
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


# ---- --estimator reparam|stl|dreg and the SNR command ---------------------------------------------

TINY = ["--epochs", "1", "--limit", "600", "--valid", "200", "--hidden", "20", "--latent", "4", "--batch-size", "100"]


def checkpoint_config(out):
    with np.load(Path(out) / "checkpoint.npz") as f:
        return json.loads(f["meta"].tobytes().decode())["config"]


@pytest.mark.parametrize("estimator, k, kl", [("reparam", 1, "analytic"), ("reparam", 3, "analytic"),
                                              ("stl", 1, "mc"), ("dreg", 3, "mc"), ("dreg", 1, "mc")])
def test_each_estimator_trains_records_itself_and_evaluates(tmp_path, capsys, estimator, k, kl):
    out = tmp_path / "run"
    main(capsys, "train", *TINY, "--k", k, "--estimator", estimator, "--out", out)
    (row,) = history(out)
    assert np.isfinite(row["train_bound"]) and np.isfinite(row["valid_bound"])
    assert -800 < row["train_bound"] < 0  # a bound on log p(x) of 784 binary pixels
    config = checkpoint_config(out)
    assert (config["estimator"], config["k"], config["kl"]) == (estimator, k, kl)  # --kl mc filled in for stl/dreg
    result = json.loads(main(capsys, "evaluate", "--out", out, "--k", "5", "--limit", "500").strip().splitlines()[-1])
    assert result["estimator"] == estimator and np.isfinite(result["test_log_likelihood"])
    stdout = main(capsys, "train", *TINY, "--epochs", "2", "--k", k, "--estimator", estimator, "--out", out, "--resume")
    assert "resuming after epoch 1" in stdout and len(history(out)) == 2


def test_default_run_is_reparam_with_analytic_kl(tmp_path, capsys):
    main(capsys, "train", *TINY, "--out", tmp_path)
    config = checkpoint_config(tmp_path)
    assert (config["estimator"], config["kl"]) == ("reparam", "analytic")
    code, stderr = main_refused(capsys, "train", *TINY, "--epochs", "2", "--estimator", "stl", "--out", tmp_path,
                                "--resume")
    assert code not in (0, None) and "different settings" in stderr and "estimator" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--estimator", "stl", "--k", "5"], "--estimator stl is biased for --k > 1"),
        (["--estimator", "stl", "--kl", "analytic"], "--estimator stl needs --kl mc"),
        (["--estimator", "dreg", "--k", "5", "--kl", "analytic"], "--estimator dreg needs --kl mc"),
        (["--estimator", "vimco"], "invalid choice"),
    ],
)
def test_unsuitable_estimator_settings_are_refused_in_one_line(tmp_path, args, message):
    r = run("train", *TINY, *args, "--out", str(tmp_path / "run"), check=False)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]  # argparse's refusals come after its usage lines; ours alone
    assert message in last and (last == r.stderr.strip() or "invalid choice" in message)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_build_graph_refuses_unsuitable_estimators_by_name():
    model = vae.VAE(x_dim=6, hidden=4, latent=2, rng=np.random.default_rng(0))
    x = np.ones((3, 6), np.float32)
    with pytest.raises(ValueError, match="biased"):
        vae.build_graph(model, x, k=2, kl="mc", estimator="stl")
    with pytest.raises(ValueError, match="needs --kl mc"):
        vae.build_graph(model, x, k=2, estimator="dreg")
    with pytest.raises(ValueError, match="must be one of reparam, stl, dreg"):
        vae.build_graph(model, x, k=2, kl="mc", estimator="rloo")


def small_problem(seed=0, b=4):
    rng = np.random.default_rng(seed)
    model = vae.VAE(x_dim=6, hidden=8, latent=2, rng=rng)
    x = (rng.random((b, 6)) < 0.5).astype(np.float32)
    return model, x


@pytest.mark.parametrize("estimator, k", [("stl", 1), ("dreg", 1), ("dreg", 4)])
def test_bound_value_and_decoder_gradient_are_the_standard_ones(estimator, k):
    """Same draws (same seed): the declared bound has the value of the reparam graph's costs,
    and the decoder's gradient is the standard one; only the encoder's gradient differs."""
    model, x = small_problem()
    std = vae.build_graph(model, x, k=k, kl="mc", rng=np.random.default_rng(3))
    new = vae.build_graph(model, x, k=k, kl="mc", rng=np.random.default_rng(3), estimator=estimator)
    np.testing.assert_allclose(new.objective().item(), std.objective().item(), rtol=1e-6)
    dec, enc = model.decoder.parameters(), model.encoder.parameters()
    g_std, g_new = scg.grad(std.surrogate(), dec + enc), scg.grad(new.surrogate(), dec + enc)
    for a, b in zip(g_std[: len(dec)], g_new[: len(dec)]):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a.data - b.data).max() for a, b in zip(g_std[len(dec):], g_new[len(dec):])) > 1e-3


@pytest.mark.parametrize("estimator, k", [("stl", 1), ("dreg", 4)])
def test_encoder_gradient_is_unbiased(estimator, k):
    """The mean encoder gradient (projected on a fixed random direction) agrees with the
    standard reparameterized one within 4 standard errors of the difference of the means.

    10,000 estimates per side, made as 100 graphs of the batch tiled 100 times: the objective
    sums the costs over the data plate, z is drawn afresh for every row and the bound's weights
    are normalised per row over the sample axis, so one graph's gradient / 100 is the mean of
    100 independent single-batch estimates; the standard errors come from the spread of the
    100 per-graph means. (1,500 single-batch graphs per side took ~10x the time and were
    weaker: DReG without its path correction, i.e. STL at k = 4, stood at 4.5 SE there and at
    13 SE here; a score term without stop_gradient on z, at k = 4, at 3.4 SE (missed) and 7.9.)"""
    model, x = small_problem(1)
    enc = model.encoder.parameters()
    direction = [np.random.default_rng(9).standard_normal(p.shape) for p in enc]
    copies = 100
    tiled = np.tile(x, (copies, 1))

    def projections(est, seed, runs=100):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(runs):
            gs = scg.grad(vae.build_graph(model, tiled, k=k, kl="mc", rng=rng, estimator=est).surrogate(), enc)
            out.append(sum(float((g.data * d).sum()) for g, d in zip(gs, direction)) / copies)
        return np.array(out)

    a, b = projections("reparam", 10), projections(estimator, 11)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se
    assert abs(a.mean()) > 4 * a.std(ddof=1) / np.sqrt(len(a))  # there is a signal to agree on


def test_encoder_snr_leaves_out_elements_that_are_always_zero():
    model, x = small_problem(2, b=5)
    x[:, [1, 4]] = 0.0  # the first layer's weights from pixels 1 and 4 get exactly zero gradient
    mean, median, used = vae.encoder_snr(model, x, 3, "dreg", 20, np.random.default_rng(0))
    # Exactly zero, whatever z: W1[i, j] when no image has pixel i on while ReLU unit j is on
    # (the dark pixels 1 and 4 among them); b1[j] and W2[j, :] when unit j is off for every image.
    w1, b1, w2, b2 = (p.data for p in model.encoder.parameters())
    active = (x @ w1 + b1 > 0).astype(np.float32)  # (B, hidden)
    live_w1 = (x.T @ active) > 0
    assert not live_w1[[1, 4]].any()
    dead = active.sum(0) == 0
    assert used == live_w1.sum() + (~dead).sum() + w2[~dead].size + b2.size
    assert used < sum(p.size for p in (w1, b1, w2, b2)) - 16
    assert 0 < median and 0 < mean and np.isfinite(mean)


def test_snr_command_writes_a_row_per_k_and_estimator(tmp_path, capsys):
    stdout = main(capsys, "snr", "--ks", "1", "3", "--runs", "5", "--epochs", "1", "--limit", "400", "--valid", "100",
                  "--hidden", "16", "--latent", "3", "--snr-batch", "20", "--out", tmp_path)
    result = json.loads((tmp_path / "snr_vs_k.json").read_text())
    assert [(row["k"], row["estimator"]) for row in result["rows"]] == [
        (1, "reparam"), (1, "dreg"), (3, "reparam"), (3, "dreg")]
    assert all(row["snr_mean"] > 0 and row["snr_median"] > 0 for row in result["rows"])
    assert (result["config"]["runs"], result["config"]["snr_batch"]) == (5, 20)
    assert (tmp_path / "snr_vs_k.png").read_bytes()[:8] == PNG
    assert "snr_vs_k.json" in stdout
    again = run("snr", "--ks", "1", "--runs", "5", "--out", str(tmp_path), check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = run("snr", "--runs", "1", "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode != 0 and "--runs" in bad.stderr


def test_a_checkpoint_from_before_the_estimator_option_resumes_as_reparam(tmp_path, capsys):
    """Checkpoints written before --estimator existed have no such setting; they were reparam."""
    out = tmp_path / "old"
    common = ["--limit", "600", "--hidden", "20", "--latent", "4"]
    main(capsys, "train", "--epochs", "1", *common, "--out", out)
    with np.load(out / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    del meta["config"]["estimator"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(out / "checkpoint.npz", "wb") as f:
        np.savez(f, **arrays)
    assert "resuming after epoch 1" in main(capsys, "train", "--epochs", "2", *common, "--out", out, "--resume")
    code, stderr = main_refused(capsys, "train", "--epochs", "3", *common, "--estimator", "dreg", "--k", "2",
                                "--out", out, "--resume")
    assert code not in (0, None) and "different settings" in stderr

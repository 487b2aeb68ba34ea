"""The test-time adaptation loop (tljax.adapt): episodic reset, continual carry-over, one
compilation, per-batch records and results, a trained run through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.adaptation.conftest import tiny_context
from tljax import adaptation
from tljax.adapt import adapt_stream, make_adapt_step
from tljax.logs import MetricLogger, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ctx():
    return tiny_context()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(48, 8, 8, 2)) * 1.5 + 0.7).astype(np.float32)
    return x, rng.integers(0, 3, 48).astype(np.int32)


def test_episodic_resets_and_continual_carries_over(ctx, data):
    x = np.concatenate([data[0][:16]] * 3)  # the same batch three times
    tent = adaptation.get("tent", ctx, lr=5e-2)
    kw = dict(batch_size=16, shuffle=False)
    epi = adapt_stream(tent, x, episodic=True, **kw).logits.reshape(3, 16, -1)
    np.testing.assert_array_equal(epi[0], epi[1])
    np.testing.assert_array_equal(epi[0], epi[2])
    cont = adapt_stream(tent, x, episodic=False, **kw)
    c = cont.logits.reshape(3, 16, -1)
    np.testing.assert_array_equal(c[0], epi[0])  # first batch: nothing adapted yet
    assert not np.allclose(c[1], c[0], atol=1e-6)
    assert int(cont.state.step) == 3
    # Continual entropy goes down on a repeated batch.
    assert cont.rows[2]["entropy"] < cont.rows[0]["entropy"]
    # predict="after": the batch is predicted by the adapted state.
    after = adapt_stream(tent, x[:16], episodic=True, predict="after", **kw).logits
    assert not np.allclose(after, epi[0], atol=1e-6)


def test_step_compiles_once_and_records(ctx, data, tmp_path):
    x, y = data
    for name in ("tent", "t3a"):
        m = adaptation.get(name, ctx)
        res = adapt_stream(m, x, y, batch_size=12, seed=1)  # 4 equal batches
        assert res.compilations == 1, name
    res = adapt_stream(m, x, y, batch_size=10, episodic=True)  # 4 x 10 + 8
    assert res.compilations == 2  # one more for the smaller last batch
    assert res.summary["num_batches"] == 5
    # Online accuracy is the accuracy of all predictions made along the stream.
    logger = MetricLogger(str(tmp_path), tensorboard=False)
    res = adapt_stream(
        adaptation.get("tent", ctx), x, y, batch_size=10, drop_remainder=True, logger=logger
    )
    logger.close()
    assert res.compilations == 1 and res.summary["num_examples"] == 40
    want = np.mean(res.logits.argmax(1) == y[res.order])
    assert res.summary["online_acc"] == pytest.approx(want)
    rows = read_metrics(str(tmp_path), "adapt")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[-1]["online_acc"] == pytest.approx(want)
    assert {"acc", "entropy", "loss", "n"} <= set(rows[0])
    np.testing.assert_array_equal(np.sort(res.order), np.sort(res.order))
    assert len(set(res.order.tolist())) == 40


def test_steps_per_batch(ctx, data):
    x = data[0][:16]
    tent = adaptation.get("tent", ctx, lr=1e-2)
    s3 = adapt_stream(tent, x, batch_size=16, steps_per_batch=3)
    assert int(s3.state.step) == 3
    t3a = adaptation.get("t3a", ctx)
    res = adapt_stream(t3a, x, batch_size=16, steps_per_batch=3)  # no labels
    assert int(res.state.step) == 1 and res.summary["steps_per_batch"] == 1
    assert "online_acc" not in res.summary and "acc" not in res.rows[0]
    assert res.summary["mean_entropy"] == pytest.approx(res.rows[0]["entropy"])
    with pytest.raises(ValueError, match="steps_per_batch must be >= 1"):
        make_adapt_step(tent, steps_per_batch=0)
    with pytest.raises(ValueError, match="Unknown predict"):
        make_adapt_step(tent, predict="later")
    with pytest.raises(ValueError, match="No batch to adapt on"):
        adapt_stream(tent, x[:3], batch_size=4, drop_remainder=True)


def test_donated_state_is_consumed(ctx, data):
    m = adaptation.get("tent", ctx)
    step = jax.jit(make_adapt_step(m), donate_argnums=0)
    state = m.init()
    state = jax.tree.map(lambda a: a.copy(), state)
    new, _, _ = step(state, data[0][:8], jax.random.key(0))
    assert int(new.step) == 1


def _tiny_run(path):
    from tests.configs import tiny
    from tljax.train import train_and_evaluate

    c = tiny.get_config("source_only,moons")
    c.model.bottleneck_dim = 8  # a BatchNorm layer for Tent
    c.train.steps = c.train.eval_every = c.train.checkpoint_every = c.train.log_every = 20
    train_and_evaluate(c, str(path))
    return str(path)


@pytest.mark.slow
def test_adapt_run_and_command_line(tmp_path):
    from tljax.adapt import adapt_run

    run = _tiny_run(tmp_path / "run")
    out = tmp_path / "tent"
    summary = adapt_run(run, "tent", out=str(out), batch_size=50, hparams={"lr": 1e-3})
    assert summary["method"] == "tent" and 0.0 <= summary["online_acc"] <= 1.0
    assert 0.0 <= summary["source_acc"] <= 1.0 and summary["task"] == "moons"
    assert json.load(open(out / "results.json")) == summary
    rows = read_metrics(str(out), "adapt")
    assert len(rows) == summary["num_batches"] and rows[-1]["online_acc"] == summary["online_acc"]
    # The source "method" on the same stream reproduces the run's own target accuracy.
    src = adapt_run(run, "source", out=str(tmp_path / "src"), batch_size=50)
    assert src["online_acc"] == pytest.approx(src["source_acc"])
    res = json.load(open(os.path.join(run, "results.json")))
    assert src["online_acc"] == pytest.approx(res["target_test_acc"], abs=1e-6)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.adapt", f"--workdir={run}", "--method=t3a"]
        + ["--episodic", "--batch_size=50", "--hparams=filter_k=5", f"--out={tmp_path}/cli"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.load(open(tmp_path / "cli" / "results.json"))
    assert got["episodic"] and got["hparams"]["filter_k"] == 5
    assert json.loads(proc.stdout)["online_acc"] == got["online_acc"]

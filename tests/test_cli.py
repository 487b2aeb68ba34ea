"""End-to-end runs through the command line: results, resume after SIGKILL, errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def train_lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(ln) for ln in f]
    for r in rows:
        r.pop("steps_per_s", None)
    return rows


@pytest.mark.parametrize("method", ["source_only", "dann"])
@pytest.mark.parametrize("task", ["moons", "digits->digits_m"])
def test_end_to_end_run_writes_results_logs_and_checkpoints(tmp_path, method, task):
    out = cli(
        f"--config=tests/configs/tiny.py:{method},{task}",
        f"--workdir={tmp_path}",
        "--config.train.tensorboard=True",
        "--config.train.progress=True",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step/s" in out.stderr  # the progress bar shows throughput
    assert any(
        p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir()
    )
    res = json.load(open(tmp_path / "results.json"))
    assert res["steps"] == 40 and res["method"] == method
    assert 0.0 <= res["target_test_acc"] <= 1.0
    assert res["evaluated_on"]["target"].endswith("/test")
    kinds = {r["kind"] for r in train_lines(tmp_path)}
    assert kinds == {"train", "eval"}
    assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == "40"
    assert "model/backbone" in (tmp_path / "freeze_rules.txt").read_text()


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    cfg = "--config=tests/configs/tiny.py:dann,digits->digits_m"
    steps = ["--config.train.steps=200"]
    ref = cli(cfg, f"--workdir={tmp_path / 'ref'}", *steps)
    assert ref.returncode == 0, ref.stderr[-3000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", cfg, f"--workdir={killed}", *steps],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "40").exists():
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists(), "killed too late to test resuming"

    resumed = cli(cfg, f"--workdir={killed}", *steps)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.load(open(tmp_path / "ref" / "results.json"))
    b = json.load(open(killed / "results.json"))
    for key in ("source_test_acc", "target_test_acc", "steps"):
        assert a[key] == b[key], key
    assert b["trained_steps_this_run"] < 200
    logged = [(r["step"], r["kind"]) for r in train_lines(killed)]
    assert len(logged) == len(set(logged)), f"steps logged twice: {logged}"
    assert train_lines(tmp_path / "ref") == train_lines(killed)


def test_unknown_config_key_fails_with_suggestion(tmp_path):
    out = cli(
        "--config=tests/configs/tiny.py:dann,moons",
        f"--workdir={tmp_path}",
        "--config.optim.lrr=0.1",
    )
    assert out.returncode != 0
    assert "lrr" in out.stderr and "lr" in out.stderr


def test_unknown_method_lists_valid_ones(tmp_path):
    out = cli(
        "--config=tests/configs/tiny.py:dann,moons",
        f"--workdir={tmp_path}",
        "--config.method.name=danny",
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Unknown method 'danny'" in out.stderr and "source_only" in out.stderr


def test_nan_loss_before_any_checkpoint_says_there_is_none(tmp_path):
    out = cli(
        "--config=tests/configs/tiny.py:source_only,moons",
        f"--workdir={tmp_path}",
        "--config.optim.lr=1e30",
        "--config.optim.schedule=constant",
    )
    assert out.returncode == 1, out.stderr[-3000:]
    assert re.search(r"NaN/Inf at step \d+; stopping\. No checkpoint was saved", out.stderr), (
        out.stderr[-2000:]
    )
    assert "step None" not in out.stderr


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    # The lr warms up linearly (lr(i) = 2i): training is fine at first, then diverges.
    out = cli(
        "--config=tests/configs/tiny.py:source_only,moons",
        f"--workdir={tmp_path}",
        "--config.optim.lr=2e5",
        "--config.optim.schedule=cosine",
        "--config.optim.warmup_steps=100000",
        "--config.train.steps=400",
    )
    assert out.returncode == 1, out.stderr[-3000:]
    match = re.search(r"NaN/Inf at step (\d+).*checkpoint \(step (\d+)\)", out.stderr)
    assert match, out.stderr[-2000:]
    bad, kept = int(match.group(1)), int(match.group(2))
    assert 0 < kept <= bad
    assert str(kept) in os.listdir(tmp_path / "checkpoints")
    assert not (tmp_path / "results.json").exists()
    # The kept checkpoint is good: the same run asked to stop at that step restores it.
    out = cli(
        "--config=tests/configs/tiny.py:source_only,moons",
        f"--workdir={tmp_path}",
        "--config.optim.lr=2e5",
        "--config.optim.schedule=cosine",
        "--config.optim.warmup_steps=100000",
        f"--config.train.steps={kept}",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.load(open(tmp_path / "results.json"))["steps"] == kept


def test_changed_config_in_existing_workdir_is_refused(tmp_path):
    cfg = "--config=tests/configs/tiny.py:source_only,moons"
    assert cli(cfg, f"--workdir={tmp_path}").returncode == 0
    out = cli(cfg, f"--workdir={tmp_path}", "--config.optim.lr=0.5")
    assert out.returncode == 2 and "optim.lr" in out.stderr


def test_corrupt_checkpoint_is_a_clear_error_and_nothing_is_deleted(tmp_path):
    # Every checkpoint corrupt: none to resume from (one corrupt step is skipped instead,
    # tests/test_checkpoint_integrity.py).
    cfg = "--config=tests/configs/tiny.py:source_only,moons"
    assert cli(cfg, f"--workdir={tmp_path}").returncode == 0
    for step in ("20", "40"):
        step_dir = tmp_path / "checkpoints" / step
        files = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0]
        for p in files:
            p.write_bytes(b"\0garbage")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    out = cli(cfg, f"--workdir={tmp_path}", "--config.train.steps=60")
    assert out.returncode == 2, out.stderr[-3000:]
    assert "can be trusted (step 40: " in out.stderr and "; step 20: " in out.stderr, out.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before

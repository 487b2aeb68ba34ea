"""``experiments/gpu_check.sh --smoke``: the prepared GPU check runs end to end at tiny
shapes on any machine and leaves its files in OUTDIR."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "gpu_check.sh")


def _run(out, *args, timeout=600):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", SCRIPT, str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_smoke_mode_writes_benchmarks_profile_tests_and_summary(tmp_path):
    out = tmp_path / "gpu"
    proc = _run(out, "--smoke", "--only=r50_32,profile,tests")
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(os.listdir(out))
    assert len(files) <= 8, files  # what the device tool brings back
    for name in ("gpu_check.log", "bench.jsonl", "bench.md", "profile.json",
                 "profile.hlo.txt.gz", "tests.log", "tests.xml", "summary.md"):  # fmt: skip
        assert name in files, (name, files)
    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    tljax = [r for r in records if r["framework"] == "tljax"]
    assert tljax and all(r["dtype"] == "bfloat16" and r["batch_per_domain"] == 2 for r in tljax)
    assert all(r["flops_per_step"] > 0 and r["steps_per_s"]["median"] > 0 for r in tljax)
    prof = json.loads((out / "profile.json").read_text())
    assert prof["ops"] and prof["categories"] and prof["block_s"] > 0
    assert "convolution" in gzip.open(out / "profile.hlo.txt.gz", "rt").read()
    summary = (out / "summary.md").read_text()
    for step in ("r50_32_bf16", "profile_r50_bf16", "tests"):
        assert f"| {step} | rc=0 |" in summary, summary
    assert "passed" in (out / "tests.log").read_text()


def test_bad_argument_is_refused_with_exit_2(tmp_path):
    proc = _run(tmp_path / "x", "--smok", timeout=60)
    assert proc.returncode == 2
    assert "unknown argument '--smok'" in proc.stderr


def test_a_failing_step_makes_the_check_fail(tmp_path):
    """A step that fails is in the summary with its rc, and the script exits non-zero."""
    out = tmp_path / "gpu"
    env_python = os.path.join(tmp_path, "python")
    with open(env_python, "w") as f:  # a "python" whose every command fails
        f.write("#!/bin/sh\nexit 3\n")
    os.chmod(env_python, 0o755)
    proc = subprocess.run(
        ["bash", SCRIPT, str(out), "--smoke", "--only=r50_32"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": env_python},
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "| r50_32_bf16 | rc=3 |" in (out / "summary.md").read_text()

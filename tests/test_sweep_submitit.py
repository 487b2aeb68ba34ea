"""The sweep's submitit launcher, with submitit's local executor (jobs as local processes).

Each run is one job that calls the code of an in-process run, so a job's results equal
those of ``run_sequential``; a job with two tasks is one 2-process data-parallel run
(tljax.distributed) and gives the same numbers too.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("submitit")

from experiments import submitit_launch as launch
from experiments import sweep  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "tests/configs/tiny.py:dann,moons"
SHORT = ["train.steps=10", "train.log_every=5", "train.eval_every=5", "train.checkpoint_every=10"]
KEYS = ("source_test_acc", "target_test_acc", "steps")


def _env():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and "JAX_" not in k}
    return dict(env, JAX_PLATFORMS="cpu")


def _results(workdir) -> dict:
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def test_submitit_jobs_match_in_process_runs(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k == "XLA_FLAGS" or "JAX_" in k]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # One job with two tasks: a 2-process data-parallel run (started first, to overlap).
    executor = launch.make_executor(
        str(tmp_path / "submitit2"), "local", timeout_min=10, tasks_per_node=2
    )
    dp = sweep.plan([TINY], ["0"], [], str(tmp_path / "dp"))
    with launch._importable_from_jobs():
        dp_job = executor.submit(launch.run_job, dp[0], SHORT)

    # Two runs as two jobs, through the command line.
    jobs_root = tmp_path / "jobs"
    args = [f"--config={TINY}", f"--workdir={jobs_root}", "--seeds=0,1", "--launcher=submitit"]
    args += ["--submitit_cluster=local", "--slurm_time_min=10"] + [f"--set={s}" for s in SHORT]
    out = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stderr.count("submitted job") == 2, out.stderr[-3000:]
    assert "| moons | dann |" in out.stdout and "| 0,1 |" in out.stdout
    logs = os.listdir(jobs_root / "submitit")
    assert sum(name.endswith("_log.err") for name in logs) == 2, logs
    job_runs = sweep.plan([TINY], ["0", "1"], [], str(jobs_root))
    assert all(spec.done() for spec in job_runs)

    # The same run in this process: the same numbers.
    local = sweep.plan([TINY], ["0"], [], str(tmp_path / "local"))
    sweep.run_sequential(local, SHORT)
    ref = _results(local[0].workdir)
    assert {k: _results(job_runs[0].workdir)[k] for k in KEYS} == {k: ref[k] for k in KEYS}
    assert _results(job_runs[0].workdir)["processes"] == 1

    # The 2-process job: every task returns the results, task 0 wrote them; same numbers.
    returned = dp_job.results()
    r = _results(dp[0].workdir)
    assert len(returned) == 2 and (r["processes"], r["devices"]) == (2, 2)
    for res in (r, *returned):
        assert {k: res[k] for k in KEYS} == {k: ref[k] for k in KEYS}


def test_failed_job_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    executor = launch.make_executor(str(tmp_path / "submitit"), "local", timeout_min=5)
    runs = sweep.plan([TINY], ["0"], [], str(tmp_path))
    # A bad value fails inside the job (config validation), not at submission.
    failed = launch.run_submitit(runs, ["train.steps=0"], executor)
    assert [f.workdir for f in failed] == [os.path.abspath(runs[0].workdir)]
    assert not runs[0].done()
    err = capsys.readouterr().err
    assert "FAILED (" in err and "config.train.steps" in err and "_log.err" in err, err

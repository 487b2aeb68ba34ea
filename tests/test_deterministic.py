"""Deterministic mode (``config.train.deterministic``): what it sets, that XLA accepts it,
that it refuses to pretend once a backend runs, and that a run then gives the same bits on
1 and on 2 CPU threads (it does not without: XLA:CPU's dots and convolutions split their
sums by the thread-pool size; see ``tljax/xla_env.py``)."""

import json
import os
import subprocess
import sys

import jax
import pytest

from tljax import xla_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh(monkeypatch):
    """No backend started as far as xla_env can tell, a clean environment, and the
    process's matmul precision restored afterwards."""
    from jax._src import xla_bridge

    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(xla_env.CPU_THREADS_VAR, raising=False)
    before = jax.config.jax_default_matmul_precision
    yield
    jax.config.update("jax_default_matmul_precision", before)


def test_apply_sets_gpu_flags_thread_pool_and_precision(fresh, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", xla_env.YNN_FLAG)
    assert xla_env.apply_deterministic() == "applied"
    assert os.environ["XLA_FLAGS"].split() == [xla_env.YNN_FLAG, *xla_env.DETERMINISTIC_GPU_FLAGS]
    assert os.environ[xla_env.CPU_THREADS_VAR] == "1"
    assert jax.config.jax_default_matmul_precision == "highest"
    assert xla_env.apply_deterministic() == "already set"  # idempotent


def test_user_settings_are_kept(fresh, monkeypatch):
    mine = "--xla_gpu_deterministic_ops=false"
    monkeypatch.setenv("XLA_FLAGS", mine)
    monkeypatch.setenv(xla_env.CPU_THREADS_VAR, "4")
    assert xla_env.apply_deterministic() == "applied"
    assert os.environ["XLA_FLAGS"] == f"{mine} --xla_gpu_exclude_nondeterministic_ops=true"
    assert os.environ[xla_env.CPU_THREADS_VAR] == "4"


def test_refuses_once_a_backend_runs_without_the_settings(monkeypatch):
    jax.devices()  # this process's backend runs
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.delenv(xla_env.CPU_THREADS_VAR, raising=False)
    with pytest.raises(RuntimeError, match="already started.*before starting Python"):
        xla_env.apply_deterministic()
    # What the running platform needs is all it checks (CPU: the pool; GPU: the flags).
    monkeypatch.setenv(xla_env.CPU_THREADS_VAR, "1")
    monkeypatch.setenv("XLA_FLAGS", " ".join(xla_env.DETERMINISTIC_GPU_FLAGS))
    before = jax.config.jax_default_matmul_precision
    try:
        assert xla_env.apply_deterministic() == "already set"
    finally:
        jax.config.update("jax_default_matmul_precision", before)


def test_this_jaxlib_accepts_the_gpu_flags():
    # XLA aborts on a flag it does not know; the CPU-only build must still run with them.
    env = dict(os.environ, XLA_FLAGS=" ".join(xla_env.DETERMINISTIC_GPU_FLAGS))
    code = "import jax.numpy as jnp; print(float((jnp.ones((4, 4)) @ jnp.ones(4)).sum()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.split()[-1] == "16.0", out.stderr[-2000:]


SCRIPT = """
import json, os, sys
os.sched_setaffinity(0, json.loads(sys.argv[3]))  # before JAX sizes its thread pool
from tests.configs import tiny
from tljax.loop import train_and_evaluate
c = tiny.get_config("dann,digits->digits_m")
c.train.deterministic = sys.argv[2] == "1"
res = train_and_evaluate(c, sys.argv[1])
rows = [json.loads(x) for x in open(os.path.join(sys.argv[1], "metrics.jsonl"))]
for r in rows:
    r.pop("steps_per_s", None)
print("OUT", json.dumps({"rows": rows, "target_test_acc": res["target_test_acc"],
    "threads": len(os.sched_getaffinity(0)), "pool": os.environ.get("PJRT_NPROC")}))
"""


def _run_on(cpus, workdir, deterministic=True):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PJRT_NPROC", "NPROC")}
    # keep the caller's PYTHONPATH (e.g. packages installed with pip --target) after ROOT
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(workdir), str(int(deterministic)), json.dumps(cpus)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("OUT ")][-1]
    return json.loads(line[4:])


@pytest.mark.slow  # two 40-step LeNet DANN runs in subprocesses (~25 s on 2 cores)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_one_and_two_threads_give_the_same_bits(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))[:2]
    one = _run_on(cpus[:1], tmp_path / "one")
    two = _run_on(cpus, tmp_path / "two")
    assert (one["threads"], two["threads"], one["pool"], two["pool"]) == (1, 2, "1", "1")
    # Every logged float (losses, accuracies, selection scores) equal, not close.
    assert one["rows"] == two["rows"] and len(one["rows"]) == 6
    assert one["target_test_acc"] == two["target_test_acc"]

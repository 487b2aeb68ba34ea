"""Multi-process data parallelism: 2 processes × 1 CPU device train exactly like 1 process.

Two copies of a tiny DANN run (``tests/configs/tiny.py:dann,moons``) start
``jax.distributed`` on localhost (CPU collectives over gloo), each with one CPU device,
so the ``data`` mesh spans 2 devices in 2 processes and each process feeds half of every
global batch. They train 6 steps, stop, and resume from the (jointly written) Orbax
checkpoint to step 12. A one-process, one-device run trains the same 12 steps with the same
global batch. Logged training losses must agree to float tolerance, test accuracies
(1,000 points) too. Processes run as subprocesses: JAX's process topology is fixed at start-up.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from tljax import distributed
    pid, nproc, port, workdir, steps = sys.argv[1:]
    pid, nproc = int(pid), int(nproc)
    multi = distributed.maybe_initialize(f"localhost:{port}", nproc, pid)
    assert multi == (nproc > 1), multi
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (nproc, nproc, 1)
    from tests.configs import tiny
    from tljax.loop import train_and_evaluate

    def config(total):
        c = tiny.get_config("dann,moons")
        c.train.steps = total
        c.train.log_every = 2
        c.train.eval_every = 6
        c.train.checkpoint_every = 6
        c.train.eval_batch_size = 100
        return c

    for total in map(int, steps.split(",")):
        results = train_and_evaluate(config(total), workdir)
    print("RESULTS", json.dumps(results))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(pid, nproc, port, workdir, steps):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",) and "JAX_" not in k}
    # keep the caller's PYTHONPATH (e.g. packages installed with pip --target) after ROOT
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
    )
    args = [sys.executable, "-c", SCRIPT, str(pid), str(nproc), str(port), workdir, steps]
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _results(out: str) -> dict:
    line = [ln for ln in out.splitlines() if ln.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS ") :])


def _metrics(workdir, kind):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def test_two_processes_match_one_process(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    port = _free_port()
    tic = time.perf_counter()
    procs = [_launch(0, 1, port, one, "12")]
    procs += [_launch(i, 2, port, two, "6,12") for i in (0, 1)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:  # say where each process was, not only that it hung
        for p in procs:
            p.kill()
        tails = [
            f"--- process {i} ---\n{(p.communicate()[0] or '')[-3000:]}"
            for i, p in enumerate(procs)
        ]
        pytest.fail("timed out after 240 s:\n" + "\n".join(tails))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    print(f"3 processes in {time.perf_counter() - tic:.1f} s")
    r1, r2_main, r2_other = map(_results, outs)
    assert (r1["processes"], r2_main["processes"], r2_main["devices"]) == (1, 2, 2)
    # Same global batches, same steps: the same training curve, to float tolerance.
    t1, t2 = _metrics(one, "train"), _metrics(two, "train")
    assert [r["step"] for r in t1] == [r["step"] for r in t2] == list(range(2, 13, 2))
    for key in ("loss", "task_loss", "method_loss", "source_acc", "dann/domain_acc"):
        np.testing.assert_allclose(
            [r[key] for r in t2], [r[key] for r in t1], rtol=1e-5, err_msg=key
        )
    # Accuracies on the 1,000 test points: equal here; a float-level difference in the
    # weights could at most flip a point lying on the decision boundary.
    same = dict(abs=1.01e-3, rel=0)
    e1, e2 = _metrics(one, "eval"), _metrics(two, "eval")
    assert [r["step"] for r in e2] == [6, 12]
    for a, b in zip(e1, e2):
        assert a["source_test_acc"] == pytest.approx(b["source_test_acc"], **same)
        assert a["target_test_acc"] == pytest.approx(b["target_test_acc"], **same)
    # The second launch resumed from the 2-process checkpoint and trained the rest.
    assert r2_main["steps"] == 12 and r2_main["trained_steps_this_run"] == 6
    for key in ("source_test_acc", "target_test_acc"):
        # Every process evaluates the full test sets and gets the same numbers.
        assert r2_main[key] == r2_other[key], key
        assert r1[key] == pytest.approx(r2_main[key], **same), key
    # Only process 0 writes results (the other returns its own copy).
    with open(os.path.join(two, "results.json")) as f:
        assert json.load(f)["target_test_acc"] == r2_main["target_test_acc"]
    assert r2_other["by_selection_rule"] == {} and r2_main["by_selection_rule"]
    assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == ["12", "6"]


def test_maybe_initialize_single_process_and_errors(monkeypatch):
    from tljax import distributed

    for name in [k for k in os.environ if k.startswith(("JAX_", "SLURM_", "OMPI_"))]:
        monkeypatch.delenv(name)
    # Nothing set, or one process, or one SLURM task: a single-process run, nothing started.
    assert distributed.maybe_initialize() is False
    assert distributed.maybe_initialize("localhost:1234", 1, 0) is False
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed.initialize_from_env() is False
    # Some settings but not all: the error names the missing ones and the variables.
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:1234")
    with pytest.raises(ValueError, match=r"\['num_processes', 'process_id'\] missing"):
        distributed.maybe_initialize()
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    with pytest.raises(ValueError, match="process_id=2 must be in 0..num_processes-1"):
        distributed.maybe_initialize()
    monkeypatch.setenv("JAX_PROCESS_ID", "one")
    with pytest.raises(ValueError, match=r"\$JAX_PROCESS_ID='one' must be an integer"):
        distributed.maybe_initialize()
    import jax

    assert not jax.distributed.is_initialized() and distributed.is_main_process()

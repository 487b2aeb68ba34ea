"""The ``--launcher=submitit`` back end of :mod:`experiments.sweep`: one cluster job per
run (SLURM through submitit, or its local executor), each calling the code path of an
in-process run."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time

from experiments.sweep import ROOT, RunSpec, make_config


def _job_distributed_init() -> None:
    """Starts jax.distributed inside a submitit job that has several tasks."""
    import submitit

    from tljax import distributed

    env = submitit.JobEnvironment()
    if env.num_tasks == 1:
        return
    if env.cluster == "slurm":
        distributed.maybe_initialize()  # JAX reads the SLURM environment (one GPU per task)
    else:  # submitit's local executor: all tasks on this machine
        port = _local_rendezvous(os.path.join(env.paths.folder, f"{env.job_id}_port"), env)
        distributed.maybe_initialize(f"localhost:{port}", env.num_tasks, env.global_rank)


def _local_rendezvous(path: str, env, timeout_s: float = 120.0) -> int:
    """Task 0 picks a free port and writes it to ``path``; the other tasks read it."""
    import socket

    if env.global_rank == 0:
        with socket.socket() as sock:
            sock.bind(("localhost", 0))
            port = sock.getsockname()[1]
        with open(path + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(path + ".tmp", path)  # atomic: readers never see a partial file
        return port
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Task 0 of job {env.job_id} wrote no port to {path}.")
        time.sleep(0.1)
    with open(path) as f:
        return int(f.read())


def run_job(spec: RunSpec, overrides: list[str]) -> dict:
    """One run of the sweep inside a submitit job: the code path of an in-process run.

    Returns:
      The run's results (as :func:`tljax.train.train_and_evaluate` returns them).
    """
    _job_distributed_init()
    from tljax.train import train_and_evaluate

    return train_and_evaluate(make_config(spec, overrides), spec.workdir)


def make_executor(
    folder: str,
    cluster: str | None = None,
    *,
    partition: str | None = None,
    timeout_min: int | None = None,
    gpus_per_node: int | None = None,
    cpus_per_task: int | None = None,
    mem_gb: int | None = None,
    nodes: int | None = None,
    tasks_per_node: int | None = None,
    array_parallelism: int | None = None,
    name: str = "tljax",
):
    """A ``submitit.AutoExecutor`` (SLURM, or ``cluster="local"`` processes).

    Arguments left as None keep submitit's defaults.

    Raises:
      ImportError: if submitit is not installed (``pip install .[cluster]``).
    """
    try:
        import submitit
    except ImportError as e:
        raise ImportError(
            "--launcher=submitit needs the submitit package: pip install '.[cluster]' "
            "(or pip install 'submitit>=1.5')."
        ) from e
    executor = submitit.AutoExecutor(folder=os.path.abspath(folder), cluster=cluster)
    params = dict(
        name=name,
        timeout_min=timeout_min,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task,
        mem_gb=mem_gb,
        nodes=nodes,
        tasks_per_node=tasks_per_node,
        slurm_partition=partition,
        slurm_array_parallelism=array_parallelism,
    )
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


@contextlib.contextmanager
def _importable_from_jobs():
    """Puts the repository on ``$PYTHONPATH`` while jobs are submitted (they inherit it),
    so that they can unpickle :func:`run_job` and import ``experiments``."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, before) if p)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _job_error(e: Exception) -> str:
    """The exception line of a failed job's traceback (submitit wraps it in its message)."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b", ln)]
    return errors[-1] if errors else (lines[0] if lines and lines[0] else type(e).__name__)


def run_submitit(runs: list[RunSpec], overrides: list[str], executor) -> list[RunSpec]:
    """Submits one job per run (a job array on SLURM) and waits for all of them.

    Args:
      runs: the runs to train.
      overrides: ``--set`` items applied to every run.
      executor: from :func:`make_executor`.

    Returns:
      The runs whose job failed (the message names the job's log files).
    """
    if not runs:
        return []
    # Absolute paths: a job's working directory is the cluster's choice.
    runs = [
        dataclasses.replace(
            spec,
            config=os.path.abspath(spec.config.partition(":")[0])
            + "".join(spec.config.partition(":")[1:]),
            workdir=os.path.abspath(spec.workdir),
        )
        for spec in runs
    ]
    with _importable_from_jobs():
        jobs = executor.map_array(run_job, runs, [list(overrides)] * len(runs))
    for spec, job in zip(runs, jobs):
        print(f"[sweep] {spec.workdir}: submitted job {job.job_id}", file=sys.stderr)
    failed = []
    for spec, job in zip(runs, jobs):
        try:
            r = job.results()[0]  # task 0's (every task of a data-parallel job returns one)
        except Exception as e:  # submitit raises FailedJobError / UncompletedJobError
            print(
                f"[sweep] {spec.workdir}: job {job.job_id} FAILED ({_job_error(e)}); log: "
                f"{job.paths.stderr}",
                file=sys.stderr,
            )
            failed.append(spec)
            continue
        acc = 100 * r["target_test_acc"]
        print(
            f"[sweep] {spec.workdir}: target test acc {acc:.1f}% (job {job.job_id})",
            file=sys.stderr,
        )
    return failed

r"""Runs configs × hyperparameter grid × seeds into one directory and prints the table.

    python -m experiments.sweep --configs=configs/source_only_digits_m.py,configs/dann_digits_m.py \
        --seeds=0,1,2 --workdir=runs/main [--set=train.steps=500]

    python -m experiments.sweep --config=configs/dann_digits_m.py --seeds=0,1,2 \
        --grid=method.weight=0.1,0.3,1.0 --grid=optim.lr=0.01,0.003 \
        --workdir=runs/dann_grid --parallel=2

``--grid=key=v1,v2,...`` (repeatable) sweeps the cartesian product of the values (parsed
as Python literals, e.g. ``--grid=method.hparams.hidden=(100,),(500,)``); ``--set``
applies to every run. ``--config`` (repeatable) names config files whose argument holds
commas (``--config=tests/configs/tiny.py:dann,moons``); ``--configs`` is a comma list.
Any method hyperparameter can be set or swept (``method.hparams.X``, also one the config
file leaves at its default); ``method.name`` (in ``--set`` or ``--grid``) is applied first
and drops the hyperparameters the new method does not take, with a warning naming them.
An unknown key or a bad value is one line ``error: ...`` and exit status 2, before
anything runs. As with ``experiments.run``, 10% of source train is held out for model
selection unless a config sets ``data.source_val_fraction``; ``--noholdout`` sets it to 0
for every run.

Run directories: ``<workdir>/<config name>/seed_<s>`` without a grid, and
``<workdir>/<config name>/<k1=v1__k2=v2>/seed_<s>`` with one; the config name is the
file's stem plus its argument, if any. Finished runs (with ``results.json``) are skipped;
interrupted ones resume from their checkpoint. Runs go one after the other in this
process, or with ``--parallel=N`` as N concurrent ``python -m experiments.run``
subprocesses (output in each run's ``run.log``), or with ``--launcher=submitit`` as one
cluster job per run (SLURM through submitit, a job array; needs ``pip install .[cluster]``)::

    python -m experiments.sweep --config=configs/dann_digits_m.py --seeds=0,1,2 \
        --workdir=/shared/runs/dann --launcher=submitit --slurm_partition=gpu \
        --slurm_gpus_per_node=1 --slurm_cpus_per_task=8 --slurm_time_min=120

Each job calls the code of an in-process run (:func:`run_job`); with
``--slurm_tasks_per_node`` or ``--slurm_nodes`` above 1 a job is one data-parallel run over
all its tasks (tljax.distributed). ``--submitit_cluster=local`` runs the jobs as local
processes (all at once: for testing). The sweep waits for its jobs; submitit's logs are in
``--submitit_folder`` (default ``<workdir>/submitit``). The table goes to
``<workdir>/results.md``; ``python -m experiments.report --workdir=...`` writes the full
report.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import time

from absl import app, flags
from absl import logging as absl_logging

from tljax import report

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that importing this
    module next to another entry point does not define flags twice)."""
    flags.DEFINE_list("configs", [], "Config files to run (comma-separated).")
    flags.DEFINE_multi_string("config", [], "A config file to run (repeatable).")
    flags.DEFINE_list("seeds", ["0"], "Seeds.")
    flags.DEFINE_bool(
        "holdout",
        True,
        "Hold out 10% of source train for model selection where a config leaves "
        "data.source_val_fraction unset; --noholdout: data.source_val_fraction=0 everywhere.",
    )
    flags.DEFINE_string("workdir", None, "Root directory of the sweep.")
    flags.DEFINE_multi_string("set", [], "Overrides key=value applied to every config.")
    flags.DEFINE_multi_string(
        "grid", [], "key=v1,v2,... (repeatable): the runs take the cartesian product."
    )
    flags.DEFINE_integer(
        "parallel", 0, "Run in N subprocesses at a time (0: one after the other, in-process)."
    )
    flags.DEFINE_bool(
        "pin_cores",
        True,
        "With --parallel=N: pin each subprocess to its own cores/N CPU cores.",
    )
    flags.DEFINE_bool(
        "vmap",
        False,
        "Train the seeds of each config (and grid point) as one vmapped program "
        "(tljax.multiseed): several times faster for small MLPs; slower for convnets on "
        "CPU (docs/seeds.md). Not combined with --parallel.",
    )
    flags.DEFINE_enum(
        "launcher",
        "local",
        ["local", "submitit"],
        "local: this machine (in-process, --parallel or --vmap); submitit: one cluster job "
        "per run (SLURM, or --submitit_cluster=local).",
    )
    flags.DEFINE_string(
        "submitit_folder", None, "submitit's job files and logs (default <workdir>/submitit)."
    )
    flags.DEFINE_enum(
        "submitit_cluster",
        None,
        ["slurm", "local", "debug"],
        "submitit executor (default: SLURM where sbatch exists, else local processes).",
    )
    flags.DEFINE_string("slurm_partition", None, "SLURM partition.")
    flags.DEFINE_integer("slurm_time_min", 60, "Time limit of each job, in minutes.")
    flags.DEFINE_integer("slurm_gpus_per_node", None, "GPUs per node of each job.")
    flags.DEFINE_integer("slurm_cpus_per_task", None, "CPUs per task.")
    flags.DEFINE_integer("slurm_mem_gb", None, "Memory per node, in GB.")
    flags.DEFINE_integer("slurm_nodes", 1, "Nodes per job (>1: multi-host data parallel).")
    flags.DEFINE_integer(
        "slurm_tasks_per_node", 1, "Processes per node (JAX convention: one per GPU)."
    )
    flags.DEFINE_integer("slurm_array_parallelism", None, "At most this many jobs at once.")
    flags.mark_flags_as_required(["workdir"])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from experiments.sweep_config import (  # noqa: E402, F401  (re-exported)
    apply_override,
    format_value,
    load_config,
    parse_grid,
    parse_value,
    set_value,
)


def config_name(path: str) -> str:
    """``configs/dann.py`` → ``dann``; ``configs/tiny.py:dann,moons`` → ``tiny_dann_moons``."""
    file, _, arg = path.partition(":")
    stem = os.path.splitext(os.path.basename(file))[0]
    return stem + ("_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", arg).strip("_") if arg else "")


@dataclasses.dataclass
class RunSpec:
    """One run of the sweep: config file, seed, grid values and its directory."""

    config: str
    seed: int
    grid: dict
    workdir: str

    def done(self) -> bool:
        return os.path.exists(os.path.join(self.workdir, "results.json"))


def plan(configs: list[str], seeds: list[str], grid_items: list[str], root: str) -> list[RunSpec]:
    """All runs of the sweep, configs × grid × seeds (grid values vary slowest)."""
    grid = parse_grid(grid_items)
    keys = [k for k, _ in grid]
    runs = []
    for path in configs:
        for combo in itertools.product(*[v for _, v in grid]):
            values = dict(zip(keys, combo))
            sub = "__".join(f"{k}={format_value(v)}" for k, v in values.items())
            for seed in seeds:
                parts = [root, config_name(path)] + ([sub] if sub else []) + [f"seed_{seed}"]
                runs.append(RunSpec(path, int(seed), values, os.path.join(*parts)))
    names = [r.workdir for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"Two runs would share a directory: {sorted(names)}.")
    return runs


def make_config(spec: RunSpec, overrides: list[str]):
    """The config of one run: the file, its seed, ``--set`` overrides, grid values
    (``method.name`` first, so the other values are checked against the run's method), and
    the command line's hold-out default (``data.source_val_fraction`` unset: 0.1)."""
    from tljax import config as config_lib

    config = load_config(spec.config)
    config.seed = spec.seed
    is_name = lambda item: item.partition("=")[0] == "method.name"  # noqa: E731
    for item in [o for o in overrides if is_name(o)]:
        apply_override(config, item)
    if "method.name" in spec.grid:
        set_value(config, "method.name", spec.grid["method.name"], "--grid=method.name")
    for item in [o for o in overrides if not is_name(o)]:
        apply_override(config, item)
    for key, value in spec.grid.items():
        if key != "method.name":
            set_value(config, key, value, f"--grid={key}")
    if config.data.source_val_fraction is None:
        config.data.source_val_fraction = config_lib.CLI_SOURCE_VAL_FRACTION
    return config


def check_run(spec: RunSpec, overrides: list[str]) -> None:
    """Validates the run's config and refuses a directory that already holds another one.

    Run directories are named by config, grid values and seed, not by ``--set``: without
    this check a finished run of another config (another ``--set``, or fewer
    ``train.steps``) would be skipped as done and reported as the run asked for.

    Raises:
      ValueError: a bad config, or a recorded run whose config differs (naming the fields,
        the old and the new values).
    """
    from tljax import config as config_lib
    from tljax.workdir import check_config

    config = make_config(spec, overrides)
    config_lib.validate(config)
    recorded = os.path.join(spec.workdir, "config.json")
    if not os.path.exists(recorded):
        return
    config_lib.resolve(config)  # as the run records it
    check_config(spec.workdir, config, write=False)
    if spec.done():
        with open(recorded) as f:
            steps = json.load(f).get("train.steps")
        if steps != config.train.steps:
            raise ValueError(
                f"{spec.workdir} holds a finished run of train.steps={steps}, not the "
                f"{config.train.steps} asked for: the sweep would report it as done. Use a new "
                "workdir, or continue that run with python -m experiments.run."
            )


def command(spec: RunSpec, overrides: list[str]) -> list[str]:
    """``python -m experiments.run`` arguments equivalent to :func:`make_config`."""
    file, sep, arg = spec.config.partition(":")
    args = [sys.executable, "-m", "experiments.run", f"--config={os.path.abspath(file)}{sep}{arg}"]
    args += [f"--workdir={os.path.abspath(spec.workdir)}", f"--config.seed={spec.seed}"]
    args += [f"--config.{item}" for item in overrides]
    args += [f"--config.{k}={v if isinstance(v, str) else repr(v)}" for k, v in spec.grid.items()]
    return args


def running_elsewhere(spec: RunSpec) -> bool:
    """Whether another live run holds the run's workdir (then says so in one line)."""
    from tljax import workdir

    info = workdir.holder(spec.workdir)
    if info is not None:
        who = f"pid {info.get('pid')} on host {info.get('host')}" if info else "another run"
        print(f"[sweep] {spec.workdir}: running elsewhere ({who}), skipped", file=sys.stderr)
    return info is not None


def run_sequential(runs: list[RunSpec], overrides: list[str]) -> None:
    """Trains the runs one after the other in this process; exits 1 on the first error."""
    from tljax.checkpoint import CheckpointError
    from tljax.errors import UserError
    from tljax.train import train_and_evaluate
    from tljax.workdir import WorkdirBusy

    for spec in runs:
        try:
            r = train_and_evaluate(make_config(spec, overrides), spec.workdir)
        except WorkdirBusy as e:  # started elsewhere since the sweep began
            print(f"[sweep] {spec.workdir}: skipped: {e}", file=sys.stderr)
            continue
        except (
            UserError,
            ValueError,
            FileNotFoundError,
            FloatingPointError,
            CheckpointError,
        ) as e:
            print(f"error in {spec.workdir}: {e}", file=sys.stderr)
            sys.exit(1)
        acc = 100 * r["target_test_acc"]
        print(f"[sweep] {spec.workdir}: target test acc {acc:.1f}%", file=sys.stderr)


def run_vmapped(runs: list[RunSpec], overrides: list[str]) -> None:
    """Trains the seeds of each (config, grid point) together with :mod:`tljax.multiseed`
    (one vmapped program per group, the same run directories); exits 1 on an error."""
    from tljax import multiseed
    from tljax.checkpoint import CheckpointError

    groups: dict[tuple, list[RunSpec]] = {}
    for spec in runs:
        key = (spec.config, repr(sorted(spec.grid.items())), os.path.dirname(spec.workdir))
        groups.setdefault(key, []).append(spec)
    for (_, _, root), group in groups.items():
        configs = [make_config(spec, overrides) for spec in group]
        try:
            results = multiseed.train_members(configs, root)
        except (ValueError, FileNotFoundError, FloatingPointError, CheckpointError) as e:
            print(f"error in {root}: {e}", file=sys.stderr)
            sys.exit(1)
        for spec, r in zip(group, results):
            acc = 100 * r["target_test_acc"]
            print(f"[sweep] {spec.workdir}: target test acc {acc:.1f}% (vmapped)", file=sys.stderr)


def core_slots(n: int) -> list[set[int]] | None:
    """The CPU cores this process may use, split into ``n`` disjoint slots of equal size
    (``None`` if there are fewer cores than slots or the platform cannot pin)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < n:
        return None
    k = len(cores) // n
    return [set(cores[i * k : (i + 1) * k]) for i in range(n)]


def run_parallel(
    runs: list[RunSpec], overrides: list[str], n: int, *, pin: bool = True
) -> list[RunSpec]:
    """Trains the runs as up to ``n`` concurrent subprocesses.

    With ``pin`` (and at least ``n`` cores), each subprocess is pinned to its own
    ``cores // n`` cores (``sched_setaffinity``), so that XLA:CPU sizes its thread pool to
    them instead of ``n`` processes each spreading threads over every core.

    Returns:
      The runs that failed (their ``run.log`` holds the output).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    slots = core_slots(n) if pin else None
    free = list(range(n))
    todo, active, failed = list(runs), [], []
    while todo or active:
        while todo and len(active) < n:
            spec, slot = todo.pop(0), free.pop(0)
            os.makedirs(spec.workdir, exist_ok=True)
            logf = open(os.path.join(spec.workdir, "run.log"), "a")
            cmd = command(spec, overrides)
            pre = None
            if slots is not None:
                cores = slots[slot]
                pre = lambda cores=cores: os.sched_setaffinity(0, cores)  # noqa: E731
                print(f"[sweep] {spec.workdir}: cores {sorted(cores)}", file=sys.stderr)
            proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, preexec_fn=pre
            )
            active.append((spec, proc, logf, slot))
        time.sleep(0.2)
        for item in list(active):
            spec, proc, logf, slot = item
            if proc.poll() is None:
                continue
            logf.close()
            active.remove(item)
            free.append(slot)
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            print(f"[sweep] {spec.workdir}: {status}", file=sys.stderr)
            if proc.returncode != 0:
                failed.append(spec)
    return failed


def summary_table(root: str) -> str:
    """The sweep's markdown table: the classic (task, method) table without a grid; with
    one, target accuracy per method and grid value (mean ± std over seeds)."""
    rows = report.attach_configs(report.collect(root))
    if any(r.get("variant") for r in rows):
        return report.to_markdown(report.headline_table(rows))
    return report.markdown_table(report.summarize(rows))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    configs = list(FLAGS.configs) + list(FLAGS.config)
    if not configs:
        raise app.UsageError("Give at least one config: --configs=a.py,b.py or --config=a.py.")
    if FLAGS.parallel < 0:
        raise app.UsageError(f"--parallel must be >= 0, got {FLAGS.parallel}.")
    if FLAGS.vmap and FLAGS.parallel:
        raise app.UsageError("--vmap and --parallel do not combine; choose one.")
    if FLAGS.launcher == "submitit" and (FLAGS.vmap or FLAGS.parallel):
        raise app.UsageError("--launcher=submitit runs one job per run; drop --vmap/--parallel.")

    overrides = list(FLAGS.set) + ([] if FLAGS.holdout else ["data.source_val_fraction=0.0"])
    try:
        runs = plan(configs, FLAGS.seeds, FLAGS.grid, FLAGS.workdir)
        for spec in runs:  # fail on a bad override or value before training anything
            check_run(spec, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    todo = [r for r in runs if not r.done()]
    for spec in runs:
        if spec.done():
            print(f"[sweep] {spec.workdir}: done, skipped", file=sys.stderr)
    todo = [r for r in todo if not running_elsewhere(r)]
    failed = []
    if FLAGS.launcher == "submitit":
        from experiments.submitit_launch import make_executor, run_submitit

        executor = make_executor(
            FLAGS.submitit_folder or os.path.join(FLAGS.workdir, "submitit"),
            FLAGS.submitit_cluster,
            partition=FLAGS.slurm_partition,
            timeout_min=FLAGS.slurm_time_min,
            gpus_per_node=FLAGS.slurm_gpus_per_node,
            cpus_per_task=FLAGS.slurm_cpus_per_task,
            mem_gb=FLAGS.slurm_mem_gb,
            nodes=FLAGS.slurm_nodes,
            tasks_per_node=FLAGS.slurm_tasks_per_node,
            array_parallelism=FLAGS.slurm_array_parallelism,
        )
        failed = run_submitit(todo, overrides, executor)
    elif FLAGS.parallel > 0:
        failed = run_parallel(todo, overrides, FLAGS.parallel, pin=FLAGS.pin_cores)
    elif FLAGS.vmap:
        run_vmapped(todo, overrides)
    else:
        run_sequential(todo, overrides)
    table = summary_table(FLAGS.workdir)
    print(table)
    with open(os.path.join(FLAGS.workdir, "results.md"), "w") as f:
        f.write(table + "\n")
    if failed:
        if FLAGS.launcher == "submitit":
            print(f"error: {len(failed)} job(s) failed; see the logs above", file=sys.stderr)
            sys.exit(1)
        logs = [os.path.join(s.workdir, "run.log") for s in failed]
        print(f"error: {len(failed)} run(s) failed; see {logs}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)

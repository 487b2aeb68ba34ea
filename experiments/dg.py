r"""DomainBed's protocol in one command: leave-one-domain-out over every held-out domain, a
seeded random hyperparameter search per method, three model-selection rules, tables.

    python -m experiments.dg --datasets=colored_fashion --methods=erm,irm,vrex \
        --n_hparams=2 --n_trials=1 --loo --workdir=runs/dg_cf --parallel=2

For each dataset (``configs/dg.py:<method>,<dataset>``, or ``--config=FILE`` with the same
``<method>,<dataset>`` argument), each method, each held-out domain (``--test_domains``,
default all), ``--n_hparams`` draws of DomainBed's search (draw 0 is the defaults;
:mod:`tljax.dg_protocol`) × ``--n_trials`` trials (a trial is a data split,
``data.data_seed``, and a model seed), one run holding out that domain; with ``--loo``
also one run per other domain that holds it out as well (leave-one-domain-out
cross-validation; the domain count times as many runs). ``--search_batch_size`` adds
DomainBed's batch-size search (8–512 per domain; off by default on a CPU). ``--set=key=value``
applies to every run (e.g. ``--set=train.steps=300``).

Runs live in ``<workdir>/<dataset>/<method>/test=<d>[,val=<v>]/h<draw>_t<trial>``; the plan
is recorded in ``<workdir>/dg_protocol.json``. Finished runs are skipped and interrupted
ones resume, so the command can be repeated, or re-run with more draws or trials (the
report covers every run recorded). Runs go in this process one after the other, or as
``--parallel=N`` pinned subprocesses (as ``experiments.sweep``). At the end (or with
``--report_only``) the tables — every rule side by side, per dataset and held-out domain,
mean ± standard error over trials, the chosen hyperparameters — go to
``<workdir>/report/dg.md`` (and ``dg_*.md/csv/tex``); ``python -m experiments.report
--workdir=<workdir>`` writes them too.

Exit status: 2 for a bad argument (one line, before anything runs); 1 when a run fails.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from experiments import sweep
from tljax import dg_protocol, dg_tables

FLAGS = flags.FLAGS
DEFAULT_CONFIG = os.path.join(sweep.ROOT, "configs", "dg.py")


def define_flags() -> None:
    flags.DEFINE_list("datasets", ["colored_fashion"], "Domain sets (configs/dg.py names).")
    flags.DEFINE_list("methods", ["erm", "irm", "vrex"], "DG methods.")
    flags.DEFINE_list("test_domains", [], "Held-out domains (default: every domain).")
    flags.DEFINE_integer("n_hparams", 2, "Hyperparameter draws per method (draw 0: defaults).")
    flags.DEFINE_integer("n_trials", 1, "Trials (data split and model seed) per draw.")
    flags.DEFINE_bool("loo", False, "Also the leave-one-domain-out validation runs.")
    flags.DEFINE_bool("search_batch_size", False, "Search the batch size as DomainBed.")
    flags.DEFINE_string("config", DEFAULT_CONFIG, "Config file taking '<method>,<dataset>'.")
    flags.DEFINE_multi_string("set", [], "key=value applied to every run.")
    flags.DEFINE_string("workdir", None, "Root directory of the sweep.")
    flags.DEFINE_integer("parallel", 0, "Concurrent subprocesses (0: in this process).")
    flags.DEFINE_bool("report_only", False, "Only write the tables of the runs that exist.")
    flags.mark_flags_as_required(["workdir"])


def domain_names(config_path: str, dataset: str) -> list[str]:
    """The domains of ``dataset`` as the config builds it (its set options and size)."""
    from tljax.data import domain_sets

    config = sweep.load_config(f"{config_path}:erm,{dataset}")
    options = {
        k: v
        for k, v in config.data.task_kwargs.to_dict().items()
        if k not in ("test", "val", "target")
    }
    name = config.data.task.split("/", 1)[1]
    ds = domain_sets.get_domain_set(name, data_seed=0, image_size=config.data.image_size, **options)
    return list(ds.domain_names())


def specs(runs, root: str, config_path: str) -> list[sweep.RunSpec]:
    return [
        sweep.RunSpec(
            f"{config_path}:{r.method},{r.dataset}",
            r.seed,
            r.overrides(),
            os.path.join(root, r.path),
        )
        for r in runs
    ]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
    root = FLAGS.workdir
    if FLAGS.report_only:
        try:
            written = dg_tables.write_tables(root)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(open(written["dg.md"]).read())
        return

    runs, domains = [], {}
    try:
        if FLAGS.parallel < 0:
            raise ValueError(f"--parallel must be >= 0, got {FLAGS.parallel}.")
        for dataset in FLAGS.datasets:
            domains[dataset] = domain_names(FLAGS.config, dataset)
            runs += dg_protocol.plan(
                dataset,
                domains[dataset],
                FLAGS.methods,
                n_hparams=FLAGS.n_hparams,
                n_trials=FLAGS.n_trials,
                loo=FLAGS.loo,
                test_domains=[d for d in FLAGS.test_domains if d in domains[dataset]]
                if FLAGS.test_domains
                else None,
                batch_size=FLAGS.search_batch_size,
            )
        missing = [d for d in FLAGS.test_domains if not any(d in v for v in domains.values())]
        if missing:
            raise ValueError(f"--test_domains {missing} is in none of {domains}.")
        # Defaults before draws, first trials before later ones, the held-out-only runs
        # before the leave-one-domain-out ones: a sweep cut short still reports.
        runs.sort(key=lambda r: (r.hparams_seed, r.trial, r.val is not None))
        todo = specs(runs, root, FLAGS.config)
        for spec in todo:  # every config checked before anything trains
            sweep.check_run(spec, FLAGS.set)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    info = {
        "domains": domains,
        "n_hparams": FLAGS.n_hparams,
        "n_trials": FLAGS.n_trials,
        "loo": FLAGS.loo,
        "config": os.path.relpath(FLAGS.config, sweep.ROOT),
        "overrides": {ds: list(FLAGS.set) for ds in domains},
    }
    dg_protocol.write_manifest(root, runs, info)
    todo = [s for s in todo if not s.done() and not sweep.running_elsewhere(s)]
    print(f"[dg] {len(runs)} runs planned, {len(todo)} to train", file=sys.stderr)
    failed = []
    if FLAGS.parallel > 0:
        failed = sweep.run_parallel(todo, FLAGS.set, FLAGS.parallel)
    else:
        sweep.run_sequential(todo, FLAGS.set)
    written = dg_tables.write_tables(root)
    print(open(written["dg.md"]).read())
    if failed:
        print(
            f"error: {len(failed)} run(s) failed; see run.log in each: "
            + ", ".join(s.workdir for s in failed),
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)

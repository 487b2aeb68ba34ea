r"""The offline inductive-transfer table: Fashion-MNIST pretraining → UCI digits.

    python -m experiments.transfer_table --workdir=runs/transfer --seeds=0,1,2

1. Pretrains the digits LeNet (28×28×1) on Fashion-MNIST twice, once supervised
   (``configs/transfer/pretrain_supervised.py``) and once with SimCLR, without labels
   reaching the backbone (``configs/transfer/pretrain_simclr.py``); one pretraining run
   each (seed 0).
2. Transfers to the UCI digits with ``--labels`` labelled examples per class (0 = all
   1,257) by each of ``--strategies`` (``configs/transfer/<strategy>.py``): ``scratch``
   (no pretraining), ``linear_probe`` (frozen backbone), ``finetune``,
   ``gradual_unfreeze``, ``l2sp`` (the defaults) and any other strategy of
   ``configs/transfer/common.py``. Every transfer run has the same budget (``--steps``).
   Seed ``s`` sets ``config.seed`` and ``data.data_seed`` (so the labelled subset and the
   digits train/test split vary with the seed; all strategies share them).
3. Writes ``<workdir>/transfer_table.md``: digits test accuracy (mean ± std over seeds)
   at the end of each run and after a third of its steps, wall time per run, and the
   pretraining runs' accuracy and time.

Runs live in ``<workdir>/pretrain_<kind>`` and
``<workdir>/<pretraining>/<strategy>/labels_<k>/seed_<s>``; finished runs (with
``results.json``) are skipped and interrupted ones resume from their checkpoint, so the
command can be re-run (e.g. with more seeds) at no cost for what is done. Runs go one
after the other in this process.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from collections.abc import Callable

from absl import app, flags
from absl import logging as absl_logging

from configs.transfer import common

PRETRAININGS = ("supervised", "simclr")
DEFAULT_STRATEGIES = ("scratch", "linear_probe", "finetune", "gradual_unfreeze", "l2sp")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Command-line flags (only when run as a script)."""
    flags.DEFINE_string("workdir", None, "Root directory of the experiment.")
    flags.DEFINE_list("seeds", ["0"], "Seeds of the transfer runs.")
    flags.DEFINE_list("labels", ["1", "5", "10", "0"], "Labels per class (0: all).")
    flags.DEFINE_list("strategies", list(DEFAULT_STRATEGIES), "Transfer strategies.")
    flags.DEFINE_list("pretrainings", list(PRETRAININGS), "Pretrainings to transfer from.")
    flags.DEFINE_integer("steps", common.STEPS, "Steps of each transfer run.")
    flags.DEFINE_integer("pretrain_steps", common.PRETRAIN_STEPS, "Steps of each pretraining.")
    flags.mark_flags_as_required(["workdir"])


def pretrain_dir(root: str, kind: str) -> str:
    return os.path.join(root, f"pretrain_{kind}")


def plan(
    root: str,
    *,
    seeds: list[int],
    labels: list[int],
    strategies: list[str],
    pretrainings: list[str],
    steps: int,
    pretrain_steps: int,
) -> list[tuple[str, object]]:
    """Every run as ``(workdir, config)``, pretraining runs first.

    Raises:
      ValueError: for an unknown strategy or pretraining.
    """
    bad = [s for s in strategies if s not in common.STRATEGIES]
    bad += [p for p in pretrainings if p not in PRETRAININGS]
    if bad:
        raise ValueError(
            f"Unknown strategy/pretraining {bad}; strategies: {sorted(common.STRATEGIES)}, "
            f"pretrainings: {list(PRETRAININGS)}."
        )
    method = {"supervised": "source_only", "simclr": "simclr"}
    runs = [
        (pretrain_dir(root, p), common.pretrain(method[p], f"steps={pretrain_steps}"))
        for p in pretrainings
    ]
    for strategy in strategies:
        sources = ["none"] if strategy == "scratch" else pretrainings
        for source in sources:
            for k in labels:
                for seed in seeds:
                    arg = f"labels={k},steps={steps}"
                    if source != "none":
                        arg += f",pretrain={os.path.abspath(pretrain_dir(root, source))}"
                    config = common.transfer(strategy, arg)
                    config.seed = seed
                    config.data.data_seed = seed
                    workdir = os.path.join(root, source, strategy, f"labels_{k}", f"seed_{seed}")
                    runs.append((workdir, config))
    return runs


def run_all(runs: list[tuple[str, object]], train: Callable | None = None) -> int:
    """Trains the runs without ``results.json``; returns how many were trained."""
    if train is None:
        from tljax.train import train_and_evaluate as train
    done = 0
    for workdir, config in runs:
        if os.path.exists(os.path.join(workdir, "results.json")):
            continue
        config.train.progress = False
        config.train.tensorboard = False
        r = train(config, workdir)
        done += 1
        acc = 100 * r["target_test_acc"]
        print(f"[transfer] {workdir}: test acc {acc:.1f}% ({r['wall_time_s']:.0f} s)", flush=True)
    return done


def _read(workdir: str) -> dict | None:
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        out = json.load(f)
    early = None
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
        with open(metrics) as f:
            evals = [json.loads(line) for line in f if '"eval"' in line]
        evals = [e for e in evals if e.get("kind") == "eval"]
        if evals:
            early = evals[0]["target_test_acc"]
    out["early_acc"] = early
    return out


def _cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def table(root: str, *, seeds, labels, strategies, pretrainings, steps) -> str:
    """The markdown report of the finished runs under ``root``."""
    heads = [f"{k} / class" if k else "all" for k in labels]
    lines = [
        f"Digits test accuracy (%), mean ± std over seeds {list(seeds)}, after {steps} "
        f"steps [after {steps // 3} steps in brackets]; wall time per run (s, mean).",
        "",
        "| pretraining | strategy | " + " | ".join(heads) + " | time/run (s) |",
        "|---|---|" + "---|" * len(labels) + "---|",
    ]
    for strategy in strategies:
        sources = ["none"] if strategy == "scratch" else pretrainings
        for source in sources:
            cells, times = [], []
            for k in labels:
                rs = [
                    _read(os.path.join(root, source, strategy, f"labels_{k}", f"seed_{s}"))
                    for s in seeds
                ]
                rs = [r for r in rs if r is not None]
                times += [r["wall_time_s"] for r in rs]
                final = _cell([r["target_test_acc"] for r in rs])
                early = _cell([r["early_acc"] for r in rs])
                cells.append(f"{final} [{early}]" if rs else "–")
            t = f"{statistics.fmean(times):.1f}" if times else "–"
            lines.append(f"| {source} | {strategy} | " + " | ".join(cells) + f" | {t} |")
    lines += ["", "| pretraining run | Fashion test acc (%) | steps | wall time (s) |"]
    lines += ["|---|---|---|---|"]
    for p in pretrainings:
        r = _read(pretrain_dir(root, p))
        if r is not None:
            lines.append(
                f"| {p} | {100 * r['source_test_acc']:.1f} | {r['steps']} | "
                f"{r['wall_time_s']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
    settings = dict(
        seeds=[int(s) for s in FLAGS.seeds],
        labels=[int(k) for k in FLAGS.labels],
        strategies=list(FLAGS.strategies),
        pretrainings=list(FLAGS.pretrainings),
        steps=FLAGS.steps,
    )
    try:
        runs = plan(FLAGS.workdir, pretrain_steps=FLAGS.pretrain_steps, **settings)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    run_all(runs)
    text = table(FLAGS.workdir, **settings)
    with open(os.path.join(FLAGS.workdir, "transfer_table.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    define_flags()
    app.run(main)

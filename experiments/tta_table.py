r"""The test-time adaptation table of ``docs/tta.md``: several source runs (seeds) x target
tasks x methods x {episodic, online}, online accuracy averaged over the runs.

    python -m experiments.tta_table --workdirs=runs/tta/src_c_s0,runs/tta/src_c_s1 \
        --tasks=digits-c/contrast/5,digits-c/fog/5 \
        --methods=source,bn_adapt,tent,tent:lr=0.01,t3a,t3a:batch_stats=True,shot_im \
        [--batch_size=64] [--out=runs/tta/table.json]

Each run adapts with the stream seed of its position in ``--workdirs`` (0, 1, ...); a
method is ``name`` (its default hyperparameters, :mod:`tljax.adaptation`) or
``name:k=v;k=v`` (those hyperparameters changed; the keys ``predict`` and
``steps_per_batch`` are options of the stream, :func:`tljax.adapt.adapt_stream`). Prints a markdown
table (mean ± standard deviation, ddof=0, of the online accuracy in %).
"""

from __future__ import annotations

import json
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
MODES = (("online", False), ("episodic", True))
STREAM_KEYS = ("predict", "steps_per_batch")


def define_flags() -> None:
    """The command-line flags (defined only when run as a script)."""
    flags.DEFINE_list("workdirs", None, "Trained source runs, one per seed.")
    flags.DEFINE_list("tasks", None, "Tasks whose target test split is the stream.")
    flags.DEFINE_list("methods", ["source", "bn_adapt", "tent", "t3a", "shot_im"], "Methods.")
    flags.DEFINE_integer("batch_size", 64, "Examples per stream batch.")
    flags.DEFINE_string("out", None, "Also write every number as JSON here.")
    flags.mark_flags_as_required(["workdirs", "tasks"])


def parse_method(spec: str) -> tuple[str, dict]:
    """``"tent:lr=0.01;optimizer=sgd"`` → ``("tent", {"lr": 0.01, "optimizer": "sgd"})``."""
    from experiments.adapt import parse_hparams

    name, _, rest = spec.partition(":")
    return name, parse_hparams([kv for kv in rest.split(";") if kv])


def measure(workdirs, tasks, methods, *, batch_size: int = 64) -> dict:
    """``{task: {method: {mode: [online_acc per run]}}}``."""
    from tljax import adaptation
    from tljax.adapt import adapt_stream, load_context

    out: dict = {}
    for seed, workdir in enumerate(workdirs):
        for task in tasks:
            ctx, x, y, _ = load_context(workdir, task)
            for name in methods:
                base, hparams = parse_method(name)
                stream = {k: hparams.pop(k) for k in STREAM_KEYS if k in hparams}
                method = adaptation.get(base, ctx, **hparams)
                for mode, episodic in MODES:
                    res = adapt_stream(
                        method, x, y, batch_size=batch_size, episodic=episodic, seed=seed, **stream
                    )
                    acc = res.summary["online_acc"]
                    out.setdefault(task, {}).setdefault(name, {}).setdefault(mode, []).append(acc)
                    print(f"{workdir} {task} {name} {mode}: {100 * acc:.2f}", flush=True)
    return out


def format_table(table: dict, methods) -> str:
    """Markdown: one row per method and mode, one column per task, plus the mean."""
    tasks = list(table)
    lines = [
        "| method | mode | " + " | ".join(tasks) + " | mean |",
        "|---|---|" + "---:|" * (len(tasks) + 1),
    ]
    for name in methods:
        for mode, _ in MODES:
            cells, means = [], []
            for t in tasks:
                a = 100 * np.asarray(table[t][name][mode])
                cells.append(f"{a.mean():.1f} ± {a.std():.1f}")
                means.append(a.mean())
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {np.mean(means):.1f} |")
    return "\n".join(lines)


def main(argv) -> int:
    del argv
    table = measure(FLAGS.workdirs, FLAGS.tasks, FLAGS.methods, batch_size=FLAGS.batch_size)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(dict(workdirs=FLAGS.workdirs, batch_size=FLAGS.batch_size, table=table), f)
    print(format_table(table, FLAGS.methods))
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))

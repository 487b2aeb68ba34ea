r"""Collects a sweep into paper-style tables (markdown, CSV, LaTeX) and figures (PNG).

    python -m experiments.report --workdir=runs/main [--out=runs/main/report] \
        [--rule=last] [--features] [--max_points=1000]

Reads every ``results.json`` (and its ``metrics.jsonl``, ``config.json``, checkpoints)
below ``--workdir`` and writes to ``--out``:

* ``report.md``: all tables and figures, with the selection rule and sources stated.
* ``results.{md,csv,tex}``: target test accuracy (%) per method × task, mean ± std over
  seeds, average over tasks, published numbers beside ours (``--rule`` picks the
  model-selection rule of the headline; default the last step).
* ``selection.{md,csv,tex}``: the target accuracy under every selection rule side by side.
* ``label_sets.{md,csv,tex}`` (runs of partial/open-set/universal tasks only): their
  metrics (partial accuracy, OS*/UNK/OS/HOS, H-score) under ``--rule``.
* ``hparam_selection.{md,csv,tex}`` and ``variant_scores.{md,csv,tex}`` (when runs of one
  task and method differ in a setting, e.g. a grid, or test-time adaptation runs of
  ``experiments.adapt`` over Tent's lr): the setting each rule picks per seed, the target
  accuracy of the picks beside the oracle's, and every setting's scores
  (:mod:`tljax.hparam_selection`).
* ``dg.md`` and ``dg_*.{md,csv,tex}`` (a sweep of ``experiments.dg``, with its
  ``dg_protocol.json``): DomainBed's tables under its three selection rules
  (:mod:`tljax.dg_protocol`).
* ``pad.json``; PNGs: ``curves_<task>__<method>[__<variant>].png``, ``pad_<task>.png``,
  ``tsne_<task>.png`` (see :mod:`tljax.plots`).
"""

from __future__ import annotations

import json
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script)."""
    flags.DEFINE_string("workdir", None, "Root directory of the sweep.")
    flags.DEFINE_string("out", None, "Output directory (default: <workdir>/report).")
    flags.DEFINE_string("rule", "last", "Model-selection rule of the headline table.")
    flags.DEFINE_bool("plots", True, "Write learning-curve PNGs.")
    flags.DEFINE_bool(
        "features", True, "Restore checkpoints for proxy A-distance and t-SNE figures."
    )
    flags.DEFINE_integer("max_points", 1000, "Points per t-SNE panel / A-distance.")
    flags.DEFINE_string("references", None, "Published numbers (JSON); default built-in.")
    flags.mark_flags_as_required(["workdir"])


def write_report(
    workdir: str,
    out: str | None = None,
    *,
    rule: str = "last",
    plots: bool = True,
    features: bool = True,
    max_points: int = 1000,
    references: str | None = None,
) -> dict[str, str]:
    """Writes the tables and figures of the sweep under ``workdir``.

    Returns:
      ``{name: path}`` of the files written.

    Raises:
      FileNotFoundError: if ``workdir`` holds no ``results.json``.
      ValueError: for an unknown selection rule.
    """
    from tljax import dg_protocol, dg_tables, hparam_selection, report
    from tljax import plots as plots_lib
    from tljax import references as refs_lib

    rows = report.collect(workdir)
    if not rows:
        raise FileNotFoundError(f"No results.json below {workdir!r}: nothing to report.")
    out = out or os.path.join(workdir, "report")
    os.makedirs(out, exist_ok=True)
    report.attach_configs(rows)
    refs = refs_lib.load(references)
    tables = {
        "results": (report.headline_table(rows, rule, refs), "Target test accuracy (%)"),
        "selection": (report.selection_rules_table(rows), "Target test accuracy (%) by rule"),
        "runtime": (report.runtime_table(rows), "Wall time per run (s)"),
    }
    label_sets = report.label_set_table(rows, rule)
    if label_sets.rows:  # partial/open-set/universal runs: HOS, H-score, ...
        tables["label_sets"] = (label_sets, "Label-set metrics (%)")
    hparams = hparam_selection.hparam_selection_table(rows)
    if hparams.rows:  # a (task, method) run with several settings: what each rule picks
        tables["hparam_selection"] = (hparams, "Settings picked by each rule, target acc (%)")
        scores = hparam_selection.variant_scores_table(rows)
        tables["variant_scores"] = (scores, "Selection scores per setting")
    written = {}
    for name, (table, caption) in tables.items():
        for ext, text in (
            ("md", report.to_markdown(table)),
            ("csv", report.to_csv(table)),
            ("tex", report.to_latex(table, caption)),
        ):
            written[f"{name}.{ext}"] = _write(os.path.join(out, f"{name}.{ext}"), text)
    groups = report.group_runs(rows)
    figures = []
    if plots:
        for (task, method, variant), runs in groups.items():
            name = plots_lib.curves_name(task, method, variant)
            title = f"{method} {variant} on {task}".replace("  ", " ")
            plots_lib.learning_curves(runs, os.path.join(out, name), title)
            figures.append((f"Learning curves: {title}", name))
            written[name] = os.path.join(out, name)
    pads = {}
    if features:
        pads = plots_lib.feature_figures(groups, out, max_points=max_points)
        written["pad.json"] = _write(os.path.join(out, "pad.json"), json.dumps(pads, indent=1))
        for task in pads:
            for kind in ("pad", "tsne"):
                name = f"{kind}_{plots_lib.slug(task)}.png"
                figures.append((f"{kind.upper()} {task}", name))
                written[name] = os.path.join(out, name)
    md = [
        f"# Results of `{workdir}`",
        "",
        f"{len(rows)} runs. Headline model selection: "
        f"**{'last step' if rule == 'last' else rule}**.",
        "",
        "## Target test accuracy",
        "",
        report.to_markdown(tables["results"][0]),
        "## By model-selection rule",
        "",
        report.to_markdown(tables["selection"][0]),
        "## Runtime per method",
        "",
        report.to_markdown(tables["runtime"][0]),
    ]
    if "label_sets" in tables:
        md += ["## Label-set metrics", "", report.to_markdown(tables["label_sets"][0])]
    if "hparam_selection" in tables:
        md += ["## Hyperparameters picked by each rule", ""]
        md += [report.to_markdown(tables[k][0]) for k in ("hparam_selection", "variant_scores")]
    if pads:
        md += ["## Proxy A-distance of test features (lowest seed of each group)", ""]
        labels = list(dict.fromkeys(k for p in pads.values() for k in p))
        md += ["| task | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
        for task, p in pads.items():
            cells = [f"{p[k]:.2f}" if k in p else "–" for k in labels]
            md.append(f"| {task} | " + " | ".join(cells) + " |")
        md.append("")
    if os.path.exists(os.path.join(workdir, dg_protocol.MANIFEST)):  # experiments.dg
        dg = dg_tables.write_tables(workdir, out)
        written.update(dg)
        md += ["## Domain generalization (DomainBed's protocol)", "", "See [dg.md](dg.md).", ""]
    if figures:
        md += ["## Figures", ""] + [f"### {t}\n\n![{t}]({n})\n" for t, n in figures]
    written["report.md"] = _write(os.path.join(out, "report.md"), "\n".join(md))
    return written


def _write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        written = write_report(
            FLAGS.workdir,
            FLAGS.out,
            rule=FLAGS.rule,
            plots=FLAGS.plots,
            features=FLAGS.features,
            max_points=FLAGS.max_points,
            references=FLAGS.references,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    with open(written["results.md"]) as f:
        print(f.read())
    print(f"[report] wrote {len(written)} files to {os.path.dirname(written['report.md'])}")


if __name__ == "__main__":
    define_flags()
    app.run(main)

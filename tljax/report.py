"""Result tables from finished runs (``results.json`` files under a directory).

The first half keeps the simple (task, method) tables of the sweep. The second half builds
paper-style tables: runs grouped by (task, method, variant), where the variant names the
config values that differ between runs of one method (a hyperparameter grid), mean ± std
over seeds, an average over tasks, every model-selection rule side by side and the
published numbers of :mod:`tljax.references` beside ours; each as markdown, CSV or LaTeX.
Plots live in :mod:`tljax.plots`; ``python -m experiments.report`` writes everything.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections import defaultdict

import numpy as np

from tljax import config as config_lib


def collect(root: str) -> list[dict]:
    """All ``results.json`` under ``root`` (recursively), each with its ``workdir``."""
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "**", "results.json"), recursive=True)):
        with open(path) as f:
            row = json.load(f)
        row["workdir"] = os.path.dirname(path)
        rows.append(row)
    return rows


# The note under every table with a "mean ± std" cell.
STD_NOTE = "± is the sample standard deviation over seeds (ddof=1; 0 for a single seed)."


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(rows: list[dict], metrics=("source_test_acc", "target_test_acc")) -> list[dict]:
    """Groups runs by (task, method): mean ± std of each metric, seeds, wall time."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["method"])].append(r)
    out = []
    for (task, method), rs in groups.items():
        entry = {
            "task": task,
            "method": method,
            "seeds": sorted(r["seed"] for r in rs),
            "steps": rs[0]["steps"],
            "selection": rs[0].get("selection", "last step"),
            "evaluated_on": rs[0].get("evaluated_on", {}),
        }
        for m in metrics:
            entry[m] = mean_std([100.0 * r[m] for r in rs])
        entry["wall_time_s"] = mean_std([r["wall_time_s"] for r in rs])
        out.append(entry)
    return out


def markdown_table(summary: list[dict], metrics=("source_test_acc", "target_test_acc")) -> str:
    """A markdown table: one row per (task, method), accuracy in % as mean ± std."""
    names = {"source_test_acc": "source test acc (%)", "target_test_acc": "target test acc (%)"}
    head = ["task", "method", *[names.get(m, m) for m in metrics], "seeds", "steps", "time/run (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in sorted(summary, key=lambda e: (e["task"], e["method"] != "source_only", e["method"])):
        cells = [e["task"], e["method"]]
        cells += [f"{e[m][0]:.1f} ± {e[m][1]:.1f}" for m in metrics]
        cells += [",".join(map(str, e["seeds"])), str(e["steps"]), f"{e['wall_time_s'][0]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", STD_NOTE])


def select_by_rules(eval_rows: list[dict]) -> dict[str, dict]:
    """Target test accuracy at the evaluation step each selection rule picks.

    Args:
      eval_rows: the ``kind == "eval"`` lines of one run's ``metrics.jsonl``.

    Returns:
      ``{rule: {"step", "target_test_acc", "score"}}`` for every rule of
      :data:`tljax.evaluate.SELECTION_RULES` whose metric was logged (ties: the later step);
      for a label-set task also its metrics at that step (``target_test_h_score``, ...).
    """
    from tljax.evaluate import SELECTION_RULES
    from tljax.evaluate_label_sets import logged_keys

    rows = sorted(eval_rows, key=lambda r: r["step"])
    if not rows:
        return {}
    out = {}
    for rule, (metric, _) in SELECTION_RULES.items():
        if metric is None:
            best = rows[-1]
        elif all(metric in r for r in rows):
            best = max(reversed(rows), key=lambda r: r[metric])
        else:
            continue
        out[rule] = {
            "step": best["step"],
            "target_test_acc": best["target_test_acc"],
            "score": best.get(metric) if metric else None,
            # Label-set tasks: their metrics at the same step (tljax.evaluate_label_sets).
            **{k: best[k] for k in logged_keys() if k in best},
        }
    return out


def selection_table(rows: list[dict]) -> str:
    """Markdown: target test accuracy (%) of each (task, method) under each selection rule,
    mean ± std over seeds."""
    from tljax.evaluate import SELECTION_RULES

    groups = defaultdict(list)
    for r in rows:
        if "by_selection_rule" in r:
            groups[(r["task"], r["method"])].append(r["by_selection_rule"])
    rules = [k for k in SELECTION_RULES if any(k in s for g in groups.values() for s in g)]
    head = ["task", "method", *rules]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, method), sels in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "source_only", kv[0][1])
    ):
        cells = [task, method]
        for rule in rules:
            vals = [100 * s[rule]["target_test_acc"] for s in sels if rule in s]
            if vals:
                m, sd = mean_std(vals)
                cells.append(f"{m:.1f} ± {sd:.1f}")
            else:
                cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", STD_NOTE])


# ---------------------------------------------------------------------------------------
# Paper-style tables: runs grouped by (task, method, variant), markdown / CSV / LaTeX.
# ---------------------------------------------------------------------------------------

# Config keys that never distinguish two runs' results (seed is the replicate axis).
NON_VARIANT_KEYS = frozenset(
    {
        "seed",
        "train.progress",
        "train.tensorboard",
        "train.max_to_keep",
        "train.checkpoint_every",
        "train.eval_batch_size",
        "train.log_every",
    }
)


@dataclasses.dataclass
class Table:
    """A table whose cells are text, numbers, or ``(mean, std)`` pairs (``None``: no value).

    Attributes:
      columns: header cells.
      rows: one list of cells per row.
      notes: lines printed under the table (markdown) or as a comment (CSV/LaTeX).
    """

    columns: list[str]
    rows: list[list]
    notes: list[str] = dataclasses.field(default_factory=list)


def attach_configs(rows: list[dict]) -> list[dict]:
    """Adds each run's flattened ``config.json`` (``row["config"]``; a test-time adaptation
    run's ``adapt_config``; ``{}`` if missing) and a ``row["variant"]`` label naming the
    config values that differ between runs of the same (task, method), e.g.
    ``"method.weight=0.3"`` (``""`` when all runs share one config)."""
    for r in rows:
        path = os.path.join(r.get("workdir", ""), "config.json")
        r["config"] = {}
        if os.path.exists(path):
            with open(path) as f:
                r["config"] = _expand_hparams(json.load(f))
        elif "adapt_config" in r:  # a test-time adaptation run (tljax.adapt.adapt_config)
            r["config"] = _expand_hparams(dict(r["adapt_config"]))
    # A key missing from an older run's config.json is a field added since, at its default
    # (new fields keep the old behaviour at their defaults), not a different variant.
    defaults = json.loads(json.dumps(config_lib.flatten(config_lib.base_config()), default=str))

    def value(r, k):
        return r["config"].get(k, defaults.get(k))

    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["method"])].append(r)
    for rs in groups.values():
        keys = sorted({k for r in rs for k in r["config"]} - NON_VARIANT_KEYS)
        varying = [
            k for k in keys if len({json.dumps(value(r, k), sort_keys=True) for r in rs}) > 1
        ]
        for r in rs:
            r["variant"] = ",".join(f"{k}={_short(value(r, k))}" for k in varying)
    return rows


def _expand_hparams(flat: dict) -> dict:
    """``method.hparams`` as one key per hyperparameter (``method.hparams.hidden``), with
    the method's defaults filled in (older runs recorded only the ones their config set),
    so a variant names the hyperparameter that differs, not the whole dict."""
    hp = flat.get("method.hparams")
    if not isinstance(hp, dict):
        return flat
    out = {k: v for k, v in flat.items() if k != "method.hparams"}
    filled = config_lib.hparams_with_defaults(str(flat.get("method.name", "")), hp)
    for k, v in json.loads(json.dumps(filled, default=str)).items():
        out[f"method.hparams.{k}"] = v
    return out


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "(" + ",".join(_short(v) for v in value) + ")"
    return str(value)


def _method_order(key):
    task, method, variant = key
    return (task, method != "source_only", method, variant)


def group_runs(rows: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Runs grouped by ``(task, method, variant)`` (call :func:`attach_configs` first for
    variants; without it every group's variant is ``""``)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["method"], r.get("variant", ""))].append(r)
    return dict(sorted(groups.items(), key=lambda kv: _method_order(kv[0])))


def target_accuracy(row: dict, rule: str = "last", metric: str = "target_test_acc") -> float | None:
    """Target test accuracy (%) of one run under a model-selection rule; ``"last"`` is the
    final evaluation. ``None`` when the run did not log what the rule needs. ``metric``:
    another logged target metric instead, e.g. ``"target_test_h_score"``."""
    if rule == "last" and metric in row:
        return 100.0 * row[metric]
    sel = row.get("by_selection_rule", {}).get(rule)
    return None if sel is None or metric not in sel else 100.0 * sel[metric]


def headline_table(
    rows: list[dict], rule: str = "last", refs=None, metric: str = "target_test_acc"
) -> Table:
    """Target test accuracy (%) per method (rows) and task (columns), mean ± std over seeds,
    an average over tasks, and the published numbers beside ours.

    Args:
      rows: runs from :func:`collect` (with :func:`attach_configs` for variants).
      rule: the model-selection rule of our numbers (a key of
        :data:`tljax.evaluate.SELECTION_RULES`).
      refs: :class:`tljax.references.References`, or ``None`` for no published column.
      metric: the logged metric in the cells (``"target_test_h_score"`` for universal
        tasks, ...; :mod:`tljax.evaluate_label_sets`); the published numbers are
        accuracies, so with another metric there is no published column.

    Raises:
      ValueError: for an unknown rule.
    """
    from tljax.evaluate import SELECTION_RULES

    if metric != "target_test_acc":
        refs = None
    if rule not in SELECTION_RULES:
        raise ValueError(f"Unknown selection rule {rule!r}; valid: {sorted(SELECTION_RULES)}.")
    from tljax.references import format_refs

    groups = group_runs(rows)
    tasks = sorted({t for t, _, _ in groups})
    methods = list(dict.fromkeys((m, v) for _, m, v in groups))
    columns = ["method", "variant"]
    for t in tasks:
        columns += [f"{t} (ours)"] + ([f"{t} (published)"] if refs else [])
    columns += ["avg (ours)"] + (["avg (published)"] if refs else []) + ["seeds"]
    out = []
    for method, variant in methods:
        cells, ours, per_seed = [method, variant], [], defaultdict(dict)
        for t in tasks:
            runs = groups.get((t, method, variant), [])
            vals = {r["seed"]: target_accuracy(r, rule, metric) for r in runs}
            vals = {s: v for s, v in vals.items() if v is not None}
            for s, v in vals.items():
                per_seed[s][t] = v
            ours.append(mean_std(list(vals.values())) if vals else None)
            cells.append(ours[-1])
            if refs:
                cells.append(format_refs(refs.lookup(t, method)))
        cells.append(_average(ours, per_seed, len(tasks)))
        if refs:
            cells.append(format_refs(refs.average(tasks, method)))
        cells.append(",".join(map(str, sorted(per_seed))))
        out.append(cells)
    what = "Target test accuracy" if metric == "target_test_acc" else metric
    notes = [
        f"{what} (%), mean ± std over seeds; model selection: "
        f"{'last step' if rule == 'last' else rule} ({SELECTION_RULES[rule][1]})."
    ]
    if refs:
        used = sorted({r.source for t in tasks for m, _ in methods for r in refs.lookup(t, m)})
        for key in used:
            s = refs.sources[key]
            notes.append(
                f"{s['short']}: {s['citation']} <{s['url']}>; selection: {s['selection']}."
            )
        for t in tasks:
            if refs.analogue(t):
                notes.append(f"{t}: {refs.analogue(t)}")
        notes.append("–: no published number for this task and method.")
    return Table(columns, out, notes)


def _average(ours: list, per_seed: dict, n_tasks: int):
    """Mean over tasks of the per-task means; ± the std over seeds of each seed's average
    when every seed ran every task (else the mean alone); ``None`` if a task is missing."""
    if any(c is None for c in ours):
        return None
    mean = float(np.mean([c[0] for c in ours]))
    full = [sum(d.values()) / n_tasks for d in per_seed.values() if len(d) == n_tasks]
    if len(full) == len(per_seed) and len(full) > 1:
        return (mean, mean_std(full)[1])
    return mean


def selection_rules_table(rows: list[dict]) -> Table:
    """Target test accuracy (%) of each (task, method, variant) under every selection rule
    that the runs logged, side by side (mean ± std over seeds)."""
    from tljax.evaluate import SELECTION_RULES

    groups = group_runs(rows)
    rules = [
        k
        for k in SELECTION_RULES
        if any(target_accuracy(r, k) is not None for rs in groups.values() for r in rs)
    ]
    out = []
    for (task, method, variant), rs in groups.items():
        cells = [task, method, variant]
        for rule in rules:
            vals = [v for v in (target_accuracy(r, rule) for r in rs) if v is not None]
            cells.append(mean_std(vals) if vals else None)
        cells.append(len(rs))
        out.append(cells)
    notes = [f"{k}: {SELECTION_RULES[k][1]}" for k in rules]
    return Table(["task", "method", "variant", *rules, "runs"], out, notes)


def label_set_table(rows: list[dict], rule: str = "last") -> Table:
    """The label-set metrics (%) of partial/open-set/universal runs: per (task, method,
    variant), every ``target_test_*`` metric of :mod:`tljax.evaluate_label_sets` that the
    runs logged, and the arg-max accuracy, mean ± std over seeds; under ``rule``.
    Closed-set runs are left out."""
    from tljax.evaluate_label_sets import logged_keys

    keys = [k for k in logged_keys() if any(target_accuracy(r, rule, k) is not None for r in rows)]
    groups = group_runs([r for r in rows if any(k in r for k in logged_keys())])
    out = []
    for (task, method, variant), rs in groups.items():
        cells = [task, method, variant]
        for k in (*keys, "target_test_acc"):
            vals = [v for v in (target_accuracy(r, rule, k) for r in rs) if v is not None]
            cells.append(mean_std(vals) if vals else None)
        out.append(cells + [len(rs)])
    names = [k.removeprefix("target_test_") for k in keys]
    notes = [
        f"Target test split, % (model selection: {rule}); acc: arg-max accuracy; "
        "partial_accuracy: mean-class over the target's classes; os_star/unk/os/hos: "
        "open-set scores; h_score: harmonic mean of shared-class and unknown accuracy; "
        "unknown_rate: fraction predicted unknown (tljax.evaluate_label_sets)."
    ]
    return Table(["task", "method", "variant", *names, "acc", "runs"], out, notes)


def runtime_table(rows: list[dict]) -> Table:
    """Wall time per run (s, mean ± std over seeds) of each method (rows) on each task
    (columns), and each method's total over all its runs: what a sweep costs per method.

    ``wall_time_s`` is a run's training loop (compilation included, process start and data
    loading not), measured as the sweep ran it (in parallel processes, or a vmapped
    group's time divided by its members)."""
    groups = group_runs(rows)
    tasks = list(dict.fromkeys(t for t, _, _ in groups))
    methods = sorted({(m, v) for _, m, v in groups}, key=lambda mv: _method_order(("", *mv)))
    out = []
    for method, variant in methods:
        cells = [method, variant]
        total = 0.0
        for task in tasks:
            rs = groups.get((task, method, variant), [])
            times = [r["wall_time_s"] for r in rs if r.get("wall_time_s") is not None]
            cells.append(mean_std(times) if times else None)
            total += sum(times)
        cells.append(total)
        out.append(cells)
    notes = [
        "Seconds per run of the training loop (compilation included; process start and "
        "data loading not), as the sweep ran it; total: the sum over the method's runs."
    ]
    return Table(["method", "variant", *tasks, "total (s)"], out, notes)


def _fmt(cell, digits: int = 1) -> str:
    if cell is None:
        return "–"
    if isinstance(cell, tuple):
        return f"{cell[0]:.{digits}f} ± {cell[1]:.{digits}f}"
    if isinstance(cell, float):
        return f"{cell:.{digits}f}"
    return str(cell)


def _drop_empty_variant(table: Table) -> Table:
    if "variant" not in table.columns:
        return table
    i = table.columns.index("variant")
    if any(r[i] for r in table.rows):
        return table
    return Table(
        table.columns[:i] + table.columns[i + 1 :],
        [r[:i] + r[i + 1 :] for r in table.rows],
        table.notes,
    )


def _notes(table: Table) -> list[str]:
    """The table's notes, and :data:`STD_NOTE` when a cell is a (mean, std) pair."""
    pairs = any(isinstance(c, tuple) for r in table.rows for c in r)
    own = any(n.startswith("± is") for n in table.notes)  # the table defines its ± itself
    return list(table.notes) + ([STD_NOTE] if pairs and not own else [])


def to_markdown(table: Table) -> str:
    """The table as GitHub markdown, notes below it."""
    t = _drop_empty_variant(table)
    lines = ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in t.rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in _notes(t)]).rstrip() + "\n"


def to_csv(table: Table) -> str:
    """The table as CSV; a ``(mean, std)`` column becomes ``<name> mean`` and ``<name> std``."""
    import csv
    import io

    pairs = [any(isinstance(r[i], tuple) for r in table.rows) for i in range(len(table.columns))]
    head = []
    for name, pair in zip(table.columns, pairs):
        head += [f"{name} mean", f"{name} std"] if pair else [name]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in table.rows:
        cells = []
        for c, pair in zip(r, pairs):
            if pair:
                m, s = c if isinstance(c, tuple) else (c, None)
                cells += ["" if m is None else f"{m:.4f}", "" if s is None else f"{s:.4f}"]
            else:
                cells.append("" if c is None else (f"{c:.4f}" if isinstance(c, float) else c))
        w.writerow(cells)
    return buf.getvalue()


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_")):
        text = text.replace(a, b)
    for a, b in (("->", r"$\to$"), ("±", r"$\pm$"), ("–", "--"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(table: Table, caption: str = "") -> str:
    """The table as a LaTeX ``tabular`` (booktabs), notes as ``%`` comments."""
    t = _drop_empty_variant(table)
    spec = "".join(
        "l" if all(isinstance(r[i], str) for r in t.rows) else "c" for i in range(len(t.columns))
    )
    lines = [f"% {n}" for n in _notes(t)]
    lines += [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{_tex(caption)}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(_tex(c) for c in t.columns) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(_tex(_fmt(c)) for c in r) + r" \\" for r in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"

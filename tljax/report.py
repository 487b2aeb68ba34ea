"""Result tables from finished runs (``results.json`` files under a directory)."""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict

import numpy as np


def collect(root: str) -> list[dict]:
    """All ``results.json`` under ``root`` (recursively), each with its ``workdir``."""
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "**", "results.json"), recursive=True)):
        with open(path) as f:
            row = json.load(f)
        row["workdir"] = os.path.dirname(path)
        rows.append(row)
    return rows


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
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
    return "\n".join(lines)


def select_by_rules(eval_rows: list[dict]) -> dict[str, dict]:
    """Target test accuracy at the evaluation step each selection rule picks.

    Args:
      eval_rows: the ``kind == "eval"`` lines of one run's ``metrics.jsonl``.

    Returns:
      ``{rule: {"step", "target_test_acc", "score"}}`` for every rule of
      :data:`tljax.evaluate.SELECTION_RULES` whose metric was logged (ties: the later step).
    """
    from tljax.evaluate import SELECTION_RULES

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
    return "\n".join(lines)

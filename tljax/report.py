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

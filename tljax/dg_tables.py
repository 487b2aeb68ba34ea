"""DomainBed's tables of a :mod:`tljax.dg_protocol` sweep: per dataset and selection rule
(:func:`rule_table`), the averages over datasets (:func:`summary_table`), the draw each
rule chose (:func:`chosen_table`), and all of them written as markdown, CSV and LaTeX
(:func:`write_tables`, what ``python -m experiments.dg`` and ``experiments.report`` call).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from tljax import report
from tljax.dg_protocol import RULE_TITLES, RULES, SE_NOTE, _slug, read_manifest, select


def _methods_in(selected: dict, dataset: str) -> list[str]:
    return list(dict.fromkeys(m for (d, m, _, _) in selected if d == dataset))


def rule_table(selected: dict, dataset: str, domains: Sequence[str], rule: str) -> report.Table:
    """DomainBed's per-dataset table: a row per method with a result under ``rule``, a
    column per held-out domain and their average (only when every domain has a value, as
    DomainBed's ``X``)."""
    rows = []
    for method in _methods_in(selected, dataset):
        cells, means = [method], []
        for d in domains:
            cell = selected.get((dataset, method, d, rule))
            cells.append(None if cell is None else (cell["mean"], cell["se"]))
            means.append(None if cell is None else cell["mean"])
        if all(m is None for m in means):  # no run of this method under this rule
            continue
        cells.append(None if None in means else float(np.mean(means)))
        rows.append(cells)
    notes = [
        f"{dataset}, model selection: {RULE_TITLES[rule]}; accuracy (%) on the held-out "
        "domain's in split (80%).",
        SE_NOTE,
        "Avg: mean over held-out domains (– when one is missing).",
    ]
    return report.Table(["method", *domains, "Avg"], rows, notes)


def summary_table(selected: dict, datasets: dict[str, Sequence[str]], rule: str) -> report.Table:
    """DomainBed's "Averages" table: a row per method, a column per dataset; per trial the
    mean over held-out domains, then mean ± standard error over the trials that have
    every domain (– when none has)."""
    methods = list(dict.fromkeys(m for (_, m, _, _) in selected))
    rows = []
    for method in methods:
        cells = [method]
        for dataset, domains in datasets.items():
            found = [selected.get((dataset, method, d, rule)) for d in domains]
            trials = set.intersection(*(set(c["trials"]) if c else set() for c in found))
            if not trials:
                cells.append(None)
                continue
            avgs = np.array(
                [np.mean([c["trials"][t]["acc"] for c in found]) for t in sorted(trials)]
            )
            cells.append((float(avgs.mean()), float(avgs.std() / math.sqrt(len(avgs)))))
        if any(c is not None for c in cells[1:]):
            rows.append(cells)
    notes = [
        f"Average over held-out domains (%), model selection: {RULE_TITLES[rule]}.",
        SE_NOTE,
    ]
    return report.Table(["method", *datasets], rows, notes)


def chosen_table(selected: dict, dataset: str, rule: str) -> report.Table:
    """Which draw each rule chose, per method, held-out domain and trial (for the record)."""
    rows = []
    for (d, method, test, r), cell in selected.items():
        if d != dataset or r != rule:
            continue
        for trial, t in sorted(cell["trials"].items()):
            hp = ", ".join(
                f"{k.split('.')[-1]}={report._short(v)}" for k, v in t["hparams"].items()
            )
            rows.append(
                [method, test, str(trial), str(t["hparams_seed"]), hp, str(t["step"]), t["acc"]]
            )
    return report.Table(
        ["method", "held out", "trial", "draw", "hyperparameters", "step", "acc"], rows
    )


def write_tables(root: str, out: str | None = None) -> dict[str, str]:
    """Selects and writes a sweep's tables (``dg_<dataset>_<rule>``, ``dg_summary_<rule>``
    and ``dg_chosen_<dataset>_<rule>``, each as .md/.csv/.tex, and ``dg.md`` with them all)
    under ``out`` (default ``<root>/report``).

    Raises:
      FileNotFoundError: without a manifest or without any finished run.
    """
    manifest = read_manifest(root)
    runs = manifest["runs"]
    domains = manifest["info"].get("domains") or None
    selected = select(root, runs, domains)
    if not selected:
        raise FileNotFoundError(f"No finished run of the sweep in {root!r}: nothing to report.")
    if domains is None:
        domains = {}
        for r in runs:
            domains.setdefault(r.dataset, [])
            if r.test not in domains[r.dataset]:
                domains[r.dataset].append(r.test)
    tested = {
        ds: [d for d in names if any(r.dataset == ds and r.test == d for r in runs)]
        for ds, names in domains.items()
    }
    out = out or os.path.join(root, "report")
    os.makedirs(out, exist_ok=True)
    written: dict[str, str] = {}

    def emit(name: str, table: report.Table, caption: str) -> None:
        for ext, text in (
            ("md", report.to_markdown(table)),
            ("csv", report.to_csv(table)),
            ("tex", report.to_latex(table, caption)),
        ):
            path = os.path.join(out, f"{name}.{ext}")
            with open(path, "w") as f:
                f.write(text)
            written[f"{name}.{ext}"] = path

    info = manifest["info"]
    md = [f"# Domain generalization: `{root}`", ""]
    for ds, names in tested.items():
        mine = [r for r in runs if r.dataset == ds]
        per = {}
        for r in mine:
            per.setdefault(r.method, set()).add((r.hparams_seed, r.trial))
        loo = sorted({r.method for r in mine if r.val is not None})
        counts = "; ".join(
            f"{m}: {len({h for h, _ in c})} draw(s) × {len({t for _, t in c})} trial(s)"
            for m, c in per.items()
        )
        finished = sum(os.path.exists(os.path.join(root, r.path, "results.json")) for r in mine)
        md += [
            f"**{ds}**: held-out domains {', '.join(names)}; {counts}; leave-one-domain-out "
            f"runs for {', '.join(loo) if loo else 'no method'}; "
            f"{finished} of {len(mine)} planned runs finished.",
            "",
        ]
        if finished < len(mine):
            md += [
                f"**Incomplete**: {len(mine) - finished} planned run(s) of {ds} have no "
                "results yet; the tables below select among the finished runs only.",
                "",
            ]
        extra = " ".join((info.get("overrides") or {}).get(ds, []))
        if info.get("config"):
            md += [f"Config `{info['config']}`" + (f", `{extra}`" if extra else "") + ".", ""]
    for rule in RULES:
        md += [f"## {RULE_TITLES[rule].capitalize()}", ""]
        for ds, names in tested.items():
            t = rule_table(selected, ds, names, rule)
            if not t.rows:
                continue
            emit(f"dg_{_slug(ds)}_{rule}", t, f"{ds}: {RULE_TITLES[rule]}")
            emit(f"dg_chosen_{_slug(ds)}_{rule}", chosen_table(selected, ds, rule), "")
            md += [f"### {ds}", "", report.to_markdown(t)]
        s = summary_table(selected, tested, rule)
        if not s.rows:
            md += ["No method has every held-out domain under this rule: no averages.", ""]
            continue
        emit(f"dg_summary_{rule}", s, f"Averages: {RULE_TITLES[rule]}")
        md += ["### Averages", "", report.to_markdown(s)]
    path = os.path.join(out, "dg.md")
    with open(path, "w") as f:
        f.write("\n".join(md))
    written["dg.md"] = path
    return written

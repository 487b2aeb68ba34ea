"""Hyperparameter selection across runs by the unsupervised rules (tables).

:func:`tljax.report.selection_rules_table` shows what each rule picks *within* a run (an
evaluation step). Here a rule picks *between* the runs of one (task, method) that differ
in a setting (their ``variant``, :func:`tljax.report.attach_configs`: a hyperparameter
grid of a trained method, or test-time adaptation runs, :mod:`tljax.adapt`, over e.g.
Tent's learning rate): for every seed, the run whose ``by_selection_rule[rule]["score"]``
is highest, and the target accuracy it reaches under that rule. For a trained run the
score is the best over its evaluation steps, so the pick is a (variant, step) pair; an
adaptation run has one evaluation, the whole stream. ``oracle`` picks by the target
accuracy itself (an upper bound, it uses the labels).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from tljax.report import Table, mean_std, target_accuracy


def _score(run: dict, rule: str) -> float | None:
    sel = run.get("by_selection_rule", {}).get(rule)
    score = None if sel is None else sel.get("score")
    return None if score is None or math.isnan(score) else float(score)


def _grids(rows: list[dict]) -> dict[tuple[str, str], dict[object, list[dict]]]:
    """``{(task, method): {seed: [runs]}}`` of the (task, method) groups with more than
    one variant; each seed's runs in variant order."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["task"], r["method"])][r["seed"]].append(r)
    out = {}
    for key, by_seed in sorted(groups.items()):
        if len({r.get("variant", "") for rs in by_seed.values() for r in rs}) > 1:
            out[key] = {
                s: sorted(rs, key=lambda r: r.get("variant", "")) for s, rs in by_seed.items()
            }
    return out


def pick(runs: list[dict], rule: str) -> dict | None:
    """The run of ``runs`` with the highest score under ``rule`` (ties: the first in
    ``runs``' order), or ``None`` when a run did not log the rule's score."""
    scores = [_score(r, rule) for r in runs]
    if not runs or any(s is None for s in scores):
        return None
    return runs[int(np.argmax(scores))]


def hparam_selection_table(rows: list[dict]) -> Table:
    """Per (task, method) with several variants: for every selection rule that all its
    runs logged a score for, the variant each rule picks per seed and the target
    accuracy (%) of the picks (mean ± std over seeds), beside the oracle's; ``mean over
    variants``: the expected accuracy of a pick at random (last evaluation).

    Args:
      rows: runs from :func:`tljax.report.collect` with
        :func:`tljax.report.attach_configs` (which sets the variants).

    Returns:
      A :class:`tljax.report.Table` with columns task, method, rule, picked (each picked
      variant and on how many seeds), target accuracy, below the oracle (points), seeds.
      No rows when no (task, method) has more than one variant.
    """
    from tljax.evaluate import SELECTION_RULES

    out = []
    for (task, method), by_seed in _grids(rows).items():
        seeds = sorted(by_seed, key=str)
        results = {}
        for rule in SELECTION_RULES:
            picks = {s: pick(by_seed[s], rule) for s in seeds}
            if any(p is None for p in picks.values()):
                continue
            accs = [target_accuracy(picks[s], rule) for s in seeds]
            if any(a is None or math.isnan(a) for a in accs):
                continue
            count = Counter(p.get("variant", "") for p in picks.values())
            picked = "; ".join(f"{v or '(default)'} ×{n}" for v, n in sorted(count.items()))
            results[rule] = (picked, mean_std(accs))
        if not results:
            continue
        oracle = results.get("oracle", (None, None))[1]
        for rule, (picked, acc) in results.items():
            below = None if oracle is None else oracle[0] - acc[0]
            out.append([task, method, rule, picked, acc, below, len(seeds)])
        random = []
        for s in seeds:
            vals = [target_accuracy(r) for r in by_seed[s]]
            random.append(float(np.mean([v for v in vals if v is not None])))
        below = None if oracle is None else oracle[0] - mean_std(random)[0]
        out.append([task, method, "mean over variants", "", mean_std(random), below, len(seeds)])
    used = dict.fromkeys(r[2] for r in out)
    notes = [
        "A rule picks, per seed, the variant (and, for trained runs, the evaluation step) "
        "with its highest score; the cell is the target accuracy there (%), the mean and "
        "std over seeds. below oracle: the oracle's mean minus the rule's (points).",
        *(f"{k}: {SELECTION_RULES[k][1]}" for k in used if k in SELECTION_RULES),
    ]
    columns = ["task", "method", "rule", "picked", "target acc (%)", "below oracle", "seeds"]
    return Table(columns, out, notes)


def variant_scores_table(rows: list[dict]) -> Table:
    """Per (task, method, variant) of the groups with several variants: the target
    accuracy (%, last evaluation) and every selection score the runs logged (the value
    a rule maximises), mean ± std over seeds, so the picks can be read off."""
    from tljax.evaluate import SELECTION_RULES

    grids = _grids(rows)
    runs = [r for by_seed in grids.values() for rs in by_seed.values() for r in rs]
    rules = [
        k
        for k, (metric, _) in SELECTION_RULES.items()
        if metric not in (None, "target_test_acc") and any(_score(r, k) is not None for r in runs)
    ]
    variants = defaultdict(list)
    for r in runs:
        variants[(r["task"], r["method"], r.get("variant", ""))].append(r)
    out = []
    for (task, method, variant), rs in sorted(variants.items()):
        accs = [a for a in (target_accuracy(r) for r in rs) if a is not None]
        cells = [task, method, variant, mean_std(accs) if accs else None]
        for rule in rules:
            vals = [v for v in (_score(r, rule) for r in rs) if v is not None]
            m, sd = mean_std(vals) if vals else (None, None)
            cells.append("–" if m is None else f"{m:.4f} ± {sd:.4f}")
        out.append(cells + [len(rs)])
    notes = [
        "target acc: last evaluation (%), mean ± std over seeds; the rules' scores "
        "(higher is better; a trained run's best over its evaluations), mean ± std.",
        *(f"{k}: {SELECTION_RULES[k][0]}" for k in rules),
    ]
    return Table(["task", "method", "variant", "target acc (%)", *rules, "runs"], out, notes)


__all__ = ["hparam_selection_table", "pick", "variant_scores_table"]

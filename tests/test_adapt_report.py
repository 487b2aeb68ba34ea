"""Test-time adaptation runs in the report and selection machinery: the trainer's
unsupervised selection scores per stream position (against NumPy), results.json in the
trainer's format, and the report's tables (headline, by rule, hyperparameter picks)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.adaptation.conftest import tiny_context
from tljax import adapt as adapt_lib
from tljax import adaptation
from tljax.adapt import adapt_stream, results_record
from tljax.logs import read_metrics

TRAINER_KEYS = {
    "task",
    "method",
    "seed",
    "steps",
    "target_test_acc",
    "target_test_mean_class_acc",
    "evaluated_on",
    "selection",
    "by_selection_rule",
    "wall_time_s",
}


# Independent NumPy references (not tljax.evaluate's code).
def _probs(logits):
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _h(p):
    return -np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-300)), 0.0), axis=-1)


def numpy_scores(logits, snd_max=2000, temperature=0.05):
    p = _probs(logits)
    q = p[:snd_max] / np.linalg.norm(p[:snd_max], axis=1, keepdims=True)
    sim = q @ q.T / temperature
    n = len(q)
    off = ~np.eye(n, dtype=bool)
    rows = sim[off].reshape(n, n - 1)  # each example against the others
    s = _probs(rows)
    return {
        "target_neg_entropy": -_h(p).mean(),
        "target_im": _h(p.mean(0)) - _h(p).mean(),
        "target_snd": _h(s).mean(),
    }


@pytest.fixture(scope="module")
def ctx():
    return tiny_context()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(48, 8, 8, 2)) * 1.5 + 0.7).astype(np.float32)
    return x, rng.integers(0, 3, 48).astype(np.int32)


def test_rows_carry_the_scores_of_every_prediction_so_far(ctx, data, monkeypatch):
    monkeypatch.setattr(adapt_lib, "SND_MAX_EXAMPLES", 25)  # the cap is reached mid-stream
    x, y = data
    res = adapt_stream(adaptation.get("tent", ctx, lr=5e-2), x, y, batch_size=10, seed=3)
    assert [r["n"] for r in res.rows] == [10, 10, 10, 10, 8]
    seen = np.cumsum([r["n"] for r in res.rows]).astype(int)
    for row, k in zip(res.rows, seen):
        want = numpy_scores(res.logits[:k], snd_max=25)
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (k, key)
        assert row["online_acc"] == pytest.approx(
            np.mean(res.logits[:k].argmax(1) == y[res.order[:k]])
        )
    # After the cap the SND score is that of the first 25 predictions (kept, not recomputed).
    assert res.rows[2]["target_snd"] == res.rows[4]["target_snd"]
    for key in adapt_lib.SCORE_KEYS:
        assert res.summary[key] == res.rows[-1][key]


def test_results_record_has_the_trainer_keys(ctx, data):
    x, y = data
    res = adapt_stream(adaptation.get("bn_adapt", ctx), x, y, batch_size=16, seed=1)
    summary = dict(res.summary, task="tiny", split="test")
    rec = results_record(summary, res, y[res.order], num_classes=3, seed=1)
    assert TRAINER_KEYS - {"task", "method"} <= set(rec)
    assert rec["seed"] == 1 and rec["steps"] == 3
    assert rec["target_test_acc"] == summary["online_acc"]
    labels = y[res.order]
    pred = res.logits.argmax(1)
    mca = np.mean([np.mean(pred[labels == c] == c) for c in range(3) if (labels == c).any()])
    assert rec["target_test_mean_class_acc"] == pytest.approx(mca)
    sel = rec["by_selection_rule"]
    # Source-free: no source validation data, so neither source_val nor dev.
    assert set(sel) == {"entropy", "im", "snd", "last", "oracle"}
    for rule, key in (
        ("entropy", "target_neg_entropy"),
        ("im", "target_im"),
        ("snd", "target_snd"),
    ):
        assert sel[rule] == {
            "step": 2,
            "target_test_acc": summary["online_acc"],
            "score": summary[key],
        }
    assert sel["oracle"]["score"] == summary["online_acc"]
    # No labels: NaN accuracy (as the trainer's for a target without a test split).
    res = adapt_stream(adaptation.get("bn_adapt", ctx), x, batch_size=16)
    rec = results_record(
        dict(res.summary, task="t", split="test"), res, None, num_classes=3, seed=0
    )
    assert np.isnan(rec["target_test_acc"]) and np.isnan(
        rec["by_selection_rule"]["im"]["target_test_acc"]
    )
    assert rec["by_selection_rule"]["im"]["score"] == res.summary["target_im"]


@pytest.mark.slow
def test_adaptation_sweep_in_the_report(tmp_path):
    """Tiny Tent runs over two learning rates and two seeds (+ the source model) through
    adapt_run; the logged scores against NumPy from predictions.npz; experiments.report's
    tables contain the runs and each rule's pick is the arg-max of its score."""
    from experiments.report import write_report
    from tests.test_adapt import _tiny_run
    from tljax.adapt import adapt_run

    run = _tiny_run(tmp_path / "run")
    sweep = tmp_path / "sweep"
    lrs = (1e-3, 0.5)
    for seed in (0, 1):
        for lr in lrs:
            adapt_run(
                run,
                "tent",
                out=str(sweep / f"tent_{lr}_{seed}"),
                batch_size=50,
                seed=seed,
                hparams={"lr": lr},
            )
        adapt_run(run, "source", out=str(sweep / f"source_{seed}"), batch_size=50, seed=seed)

    scores = {}
    for name in sorted(os.listdir(sweep)):
        out = sweep / name
        res = json.load(open(out / "results.json"))
        assert TRAINER_KEYS <= set(res) and res["task"] == "moons"
        pred = np.load(out / "predictions.npz")
        logits, labels = pred["logits"], pred["labels"]
        assert len(logits) == res["num_examples"] == len(pred["order"])
        assert res["target_test_acc"] == pytest.approx(np.mean(logits.argmax(1) == labels))
        want = numpy_scores(logits)
        rows = read_metrics(str(out), "adapt")
        assert len(rows) == res["steps"] == res["num_batches"]
        for key, value in want.items():
            assert res[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, key)
            assert rows[-1][key] == res[key]
        for rule, key in (
            ("entropy", "target_neg_entropy"),
            ("im", "target_im"),
            ("snd", "target_snd"),
        ):
            assert res["by_selection_rule"][rule]["score"] == res[key]
        assert res["adapt_config"]["adapt.method"] == res["method"]
        scores[name] = res

    written = write_report(str(sweep), plots=True, features=False)
    headline = open(written["results.md"]).read()
    for lr in lrs:
        assert f"| tent | adapt.hparams.lr={lr:g} |" in headline
    assert "| source |" in headline
    selection = open(written["selection.md"]).read()
    assert "entropy" in selection and "snd" in selection and "tent" in selection
    assert "curves_moons__tent__adapt.hparams.lr_0.5.png" in written or any(
        k.startswith("curves_moons__tent") for k in written
    )

    # What each rule picks, from the scores in results.json, seed by seed.
    md = open(written["hparam_selection.md"]).read()
    for rule, key in (
        ("entropy", "target_neg_entropy"),
        ("im", "target_im"),
        ("snd", "target_snd"),
        ("oracle", "target_test_acc"),
    ):
        picks, accs = [], []
        for seed in (0, 1):
            cand = [scores[f"tent_{lr}_{seed}"] for lr in lrs]
            best = int(np.argmax([c[key] for c in cand]))
            picks.append(f"adapt.hparams.lr={lrs[best]:g}")
            accs.append(100 * cand[best]["target_test_acc"])
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| moons | tent | {rule} |"))
        for p in set(picks):
            assert f"{p} ×{picks.count(p)}" in line, (rule, line)
        mean = np.mean(accs)
        assert f"| {mean:.1f} ± " in line, (rule, line, accs)
    assert "mean over variants" in md
    assert "| moons | source |" not in md  # one setting: nothing to pick
    scores_md = open(written["variant_scores.md"]).read()
    assert "adapt.hparams.lr=0.5" in scores_md and "entropy" in scores_md
    report_md = open(written["report.md"]).read()
    assert "## Hyperparameters picked by each rule" in report_md


def test_hparam_selection_picks_the_best_score_per_seed():
    """Trained-run-like rows: a rule's pick per seed is the variant with the highest
    score (ties: the first variant), the cell the accuracy at the step the rule chose."""
    from tljax.hparam_selection import hparam_selection_table, pick, variant_scores_table

    def row(variant, seed, acc, ent_score, ent_acc):
        sel = {
            "entropy": {"step": 5, "target_test_acc": ent_acc, "score": ent_score},
            "last": {"step": 9, "target_test_acc": acc, "score": None},
            "oracle": {"step": 7, "target_test_acc": max(acc, ent_acc), "score": max(acc, ent_acc)},
        }
        return dict(
            task="t",
            method="m",
            variant=variant,
            seed=seed,
            target_test_acc=acc,
            by_selection_rule=sel,
        )

    rows = [
        row("lr=1", 0, 0.5, -0.2, 0.55),
        row("lr=2", 0, 0.7, -0.1, 0.60),
        row("lr=1", 1, 0.6, -0.3, 0.40),
        row("lr=2", 1, 0.8, -0.3, 0.65),  # a tie: the first variant ("lr=1") is picked
        dict(task="t", method="other", variant="", seed=0, target_test_acc=0.1),
    ]
    assert pick(rows[:2], "entropy") is rows[1] and pick(rows[2:4], "entropy") is rows[2]
    assert pick(rows[:2], "last") is None  # no score to pick by
    table = hparam_selection_table(rows)
    by_rule = {r[2]: r for r in table.rows}
    assert set(by_rule) == {"entropy", "oracle", "mean over variants"}
    assert by_rule["entropy"][3] == "lr=1 ×1; lr=2 ×1"
    assert by_rule["entropy"][4] == pytest.approx((np.mean([60, 40]), np.std([60, 40], ddof=1)))
    assert by_rule["oracle"][3] == "lr=2 ×2"
    assert by_rule["oracle"][4][0] == pytest.approx(np.mean([70, 80]))
    assert by_rule["entropy"][5] == pytest.approx(75 - 50)
    assert by_rule["mean over variants"][4][0] == pytest.approx(np.mean([60, 70]))
    assert all(r[1] == "m" for r in table.rows)  # one variant: nothing to pick
    scores = variant_scores_table(rows)
    assert [r[2] for r in scores.rows] == ["lr=1", "lr=2"]
    assert scores.rows[0][4] == f"{np.mean([-0.2, -0.3]):.4f} ± {np.std([-0.2, -0.3], ddof=1):.4f}"

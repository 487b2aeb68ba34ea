"""DomainBed's protocol (tljax.dg_protocol, experiments.dg): the search, the plan, the three
selection rules on hand-built records, the tables, and one small sweep end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tljax import dg_protocol as P
from tljax import dg_tables as T
from tljax import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------- search


def test_draw_zero_is_the_defaults_for_every_trial():
    for method in ("erm", "irm", "vrex", "group_dro", "mixup", "dg_coral", "dg_dann"):
        for trial in (0, 1, 5):
            hp = P.sample_hparams(method, 0, trial)
            assert hp == {h.key: h.default for h in P.search_space(method)}
    assert P.sample_hparams("irm", 0, 0) == {
        "optim.lr": 1e-3,
        "method.hparams.penalty_weight": 100.0,
        "method.hparams.anneal_iters": 500,
    }


def test_draws_are_seeded_and_differ_across_draws_and_trials():
    a = P.sample_hparams("irm", 3, 1)
    assert a == P.sample_hparams("irm", 3, 1)
    assert a != P.sample_hparams("irm", 4, 1)
    assert a != P.sample_hparams("irm", 3, 2)
    # One random stream per hyperparameter: the learning rate of a draw does not depend on
    # which other hyperparameters the method searches.
    assert P.sample_hparams("erm", 3, 1)["optim.lr"] == a["optim.lr"]
    assert P.sample_hparams("vrex", 3, 1)["optim.lr"] == a["optim.lr"]


def test_draws_follow_domainbeds_distributions():
    n = 400
    draws = [P.sample_hparams("irm", h, 0, batch_size=True) for h in range(1, n + 1)]
    lr = np.log10([d["optim.lr"] for d in draws])
    lam = np.log10([d["method.hparams.penalty_weight"] for d in draws])
    it = np.array([d["method.hparams.anneal_iters"] for d in draws])
    bs = np.array([d["data.batch_size"] for d in draws])
    assert lr.min() >= -4.5 and lr.max() <= -2.5
    assert lam.min() >= -1 and lam.max() <= 5
    assert it.min() >= 1 and it.max() < 10_000 and it.dtype.kind == "i"
    assert bs.min() >= 8 and bs.max() < 512
    # Uniform in the exponent: mean and spread of U(a, b) (loose, 400 draws).
    for x, lo, hi in ((lr, -4.5, -2.5), (lam, -1, 5)):
        assert abs(x.mean() - (lo + hi) / 2) < 0.1 * (hi - lo)
        assert abs(x.std() - (hi - lo) / math.sqrt(12)) < 0.1 * (hi - lo)
    hidden = {P.sample_hparams("dg_dann", h, 0)["method.hparams.hidden"] for h in range(1, 200)}
    assert {len(x) for x in hidden} == {2, 3, 4}  # depth {3,4,5}: depth-1 hidden layers
    assert all(64 <= x[0] < 1024 and len(set(x)) == 1 for x in hidden)


def test_seed_hash_is_domainbeds_md5():
    import hashlib

    assert P.seed_hash(1, 2) == int(hashlib.md5(b"(1, 2)").hexdigest(), 16) % 2**31
    assert P.seed_hash("a") != P.seed_hash("b")
    assert 0 <= P.seed_hash("x", None, 3) < 2**31


# --------------------------------------------------------------------------------- plan


def test_plan_counts_paths_and_seeds():
    doms = ["a", "b", "c", "d"]
    runs = P.plan("set", doms, ["erm", "irm"], n_hparams=3, n_trials=2)
    assert len(runs) == 2 * 4 * 3 * 2
    loo = P.plan("set", doms, ["erm", "irm"], n_hparams=3, n_trials=2, loo=True)
    assert len(loo) == 2 * 4 * 3 * 2 * 4  # the held-out-only run + one per other domain
    assert len({r.path for r in loo}) == len(loo)
    assert len({r.seed for r in loo}) == len(loo)
    for r in loo:
        assert r.val != r.test
        o = r.overrides()
        assert o["data.task_kwargs.test"] == r.test and o["data.data_seed"] == r.trial
        assert ("data.task_kwargs.val" in o) == (r.val is not None)
        assert r.hparams == P.sample_hparams(r.method, r.hparams_seed, r.trial)
    one = P.plan("set", doms, ["erm"], n_hparams=1, n_trials=1, test_domains=["c"])
    assert [r.test for r in one] == ["c"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(test_domains=["z"]), "Unknown held-out domain"),
        (dict(n_hparams=0), "n_hparams and n_trials must be >= 1"),
        (dict(domains=["a", "b"], loo=True), "needs >= 3"),
        (dict(domains=["a"]), "needs >= 2"),
    ],
)
def test_plan_errors(kwargs, match):
    args = dict(domains=["a", "b", "c"], n_hparams=1, n_trials=1)
    args.update(kwargs)
    doms = args.pop("domains")
    with pytest.raises(ValueError, match=match):
        P.plan("set", doms, ["erm"], **args)


# ---------------------------------------------------------------------------- selection


def _write_run(root, run, evals):
    d = os.path.join(root, run.path)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for e in evals:
            f.write(json.dumps({"kind": "eval", **e}) + "\n")
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"target_test_acc": evals[-1]["target_test_acc"]}, f)


def _fake_sweep(root):
    """Three domains, one method, two draws, two trials, with LOO runs; every accuracy is
    chosen so that each rule picks a known draw and step (asserted below)."""
    doms = ["a", "b", "c"]
    runs = P.plan("toy", doms, ["erm"], n_hparams=2, n_trials=2, loo=True)
    for r in runs:
        h, t = r.hparams_seed, r.trial
        if r.val is None:
            # Draw 0 has the best training-domain validation at step 10 (0.9) but a poor
            # last step; draw 1 has the better held-out out split at the last step.
            tdv = [0.5, 0.9, 0.6] if h == 0 else [0.6, 0.7, 0.8]
            test = [0.1 + t, 0.2 + t, 0.3 + t] if h == 0 else [0.4 + t, 0.5 + t, 0.6 + t]
            out = [0.0, 0.0, 0.2] if h == 0 else [0.0, 0.0, 0.7]
            evals = [
                {
                    "step": s,
                    "train_domains_val_acc": a,
                    "target_test_acc": b / 10,
                    "target_out_acc": c,
                }
                for s, a, b, c in zip((0, 10, 20), tdv, test, out)
            ]
        else:
            # LOO: draw 0 scores best at step 20 (mean of the two val domains 0.8), draw 1
            # at most 0.6; a missing step in one val run removes that step.
            v = [0.2, 0.3, 0.8] if h == 0 else [0.6, 0.5, 0.4]
            steps = (0, 10, 20)
            if h == 1 and r.val == doms[-1] or (h == 1 and r.test == "c" and r.val == "b"):
                steps, v = (10, 20), v[1:]
            evals = [
                {
                    "step": s,
                    "val_domain_acc": x,
                    "target_test_acc": 0.0,
                    "train_domains_val_acc": 0.0,
                }
                for s, x in zip(steps, v)
            ]
        _write_run(root, r, evals)
    P.write_manifest(
        root, runs, {"domains": {"toy": doms}, "n_hparams": 2, "n_trials": 2, "loo": True}
    )
    return runs


def test_selection_rules_pick_the_documented_draw_and_step(tmp_path):
    root = str(tmp_path)
    runs = _fake_sweep(root)
    sel = P.select(root, runs)
    for test in ("a", "b", "c"):
        iid = sel[("toy", "erm", test, "train_domain_val")]
        assert {t: (x["hparams_seed"], x["step"]) for t, x in iid["trials"].items()} == {
            0: (0, 10),
            1: (0, 10),
        }
        # trial t: test accuracy (0.2 + t)/10 in percent
        assert iid["trials"][0]["acc"] == pytest.approx(2.0)
        assert iid["trials"][1]["acc"] == pytest.approx(12.0)
        assert iid["mean"] == pytest.approx(7.0)
        assert iid["se"] == pytest.approx(np.std([2.0, 12.0]) / math.sqrt(2))
        orc = sel[("toy", "erm", test, "test_domain_val")]
        assert {t: (x["hparams_seed"], x["step"]) for t, x in orc["trials"].items()} == {
            0: (1, 20),
            1: (1, 20),
        }
        assert orc["mean"] == pytest.approx(np.mean([6.0, 16.0]))
        loo = sel[("toy", "erm", test, "loo")]
        assert {t: (x["hparams_seed"], x["step"]) for t, x in loo["trials"].items()} == {
            0: (0, 20),
            1: (0, 20),
        }
        assert loo["trials"][0]["val"] == pytest.approx(0.8)
        assert loo["mean"] == pytest.approx(np.mean([3.0, 13.0]))


def test_loo_needs_every_validation_domain(tmp_path):
    root = str(tmp_path)
    runs = _fake_sweep(root)
    kept = [r for r in runs if not (r.val == "a" and r.test == "b")]
    sel = P.select(root, kept)
    assert ("toy", "erm", "b", "loo") not in sel
    assert ("toy", "erm", "a", "loo") in sel
    # A run without results.json (still training) counts as absent: trial 0's draw 0
    # loses its LOO score, so that trial takes draw 1 at its best complete step (10:
    # val=c has no step 0; means 0.5 at 10, 0.4 at 20).
    gone = [r for r in runs if (r.val, r.test, r.hparams_seed, r.trial) == ("b", "a", 0, 0)]
    os.remove(os.path.join(root, gone[0].path, "results.json"))
    trials = P.select(root, runs)[("toy", "erm", "a", "loo")]["trials"]
    assert (trials[0]["hparams_seed"], trials[0]["step"]) == (1, 10)
    assert trials[0]["val"] == pytest.approx(0.5) and trials[0]["acc"] == pytest.approx(5.0)
    assert (trials[1]["hparams_seed"], trials[1]["step"]) == (0, 20)


def test_ties_follow_domainbed(tmp_path):
    root = str(tmp_path)
    runs = P.plan("toy", ["a", "b"], ["erm"], n_hparams=2, n_trials=1, test_domains=["a"])
    for r in runs:  # both draws tie everywhere; steps 0 and 10 tie on validation
        _write_run(
            root,
            r,
            [
                {
                    "step": s,
                    "train_domains_val_acc": 0.5,
                    "target_out_acc": 0.5,
                    "target_test_acc": acc,
                }
                for s, acc in ((0, 0.1 * (1 + r.hparams_seed)), (10, 0.9))
            ],
        )
    sel = P.select(root, runs)
    iid = sel[("toy", "erm", "a", "train_domain_val")]["trials"][0]
    assert (iid["hparams_seed"], iid["step"]) == (1, 0)  # later draw, earlier step
    assert iid["acc"] == pytest.approx(20.0)
    # No leave-one-domain-out runs: that rule's table has no row for the method.
    assert T.rule_table(sel, "toy", ["a"], "loo").rows == []
    assert T.rule_table(sel, "toy", ["a"], "train_domain_val").rows[0][0] == "erm"


def test_tables_and_report_files(tmp_path):
    root = str(tmp_path)
    _fake_sweep(root)
    written = T.write_tables(root)
    for rule in P.RULES:
        for ext in ("md", "csv", "tex"):
            assert os.path.exists(written[f"dg_toy_{rule}.{ext}"])
    md = open(written["dg_toy_train_domain_val.md"]).read()
    se = np.std([2.0, 12.0]) / math.sqrt(2)
    assert f"| erm | 7.0 ± {se:.1f} | 7.0 ± {se:.1f} | 7.0 ± {se:.1f} | 7.0 |" in md
    assert P.SE_NOTE in md and report.STD_NOTE not in md
    summary = T.summary_table(
        P.select(root, P.read_manifest(root)["runs"]), {"toy": ["a", "b", "c"]}, "loo"
    )
    # trial averages 3 and 13: mean 8, standard error std([3, 13]) / sqrt(2) = 5 / sqrt(2)
    assert summary.rows == [["erm", (pytest.approx(8.0), pytest.approx(5.0 / math.sqrt(2)))]]
    text = open(written["dg.md"]).read()
    assert "Leave-one-domain-out cross-validation" in text
    assert "erm: 2 draw(s) × 2 trial(s); leave-one-domain-out runs for erm" in text
    assert "; 36 of 36 planned runs finished." in text and "Incomplete" not in text
    csv = open(written["dg_toy_test_domain_val.csv"]).read().splitlines()
    assert csv[0].startswith("method,a mean,a std")
    # A sweep still running (or cut short) says so above its tables.
    os.remove(os.path.join(root, P.read_manifest(root)["runs"][-1].path, "results.json"))
    text = open(T.write_tables(root)["dg.md"]).read()
    assert "; 35 of 36 planned runs finished." in text
    assert "**Incomplete**: 1 planned run(s) of toy have no results yet" in text


def test_manifest_merges_and_rejects_garbage(tmp_path):
    root = str(tmp_path)
    a = P.plan("toy", ["a", "b"], ["erm"], n_hparams=1, n_trials=1)
    b = P.plan("toy", ["a", "b"], ["erm"], n_hparams=2, n_trials=1)
    P.write_manifest(root, a, {"n_hparams": 1})
    P.write_manifest(root, b, {"n_hparams": 2, "domains": {"toy": ["a", "b"]}})
    c = P.plan("two", ["x", "y"], ["irm"], n_hparams=1, n_trials=1)
    P.write_manifest(root, c, {"domains": {"two": ["x", "y"]}})
    m = P.read_manifest(root)
    assert m["info"]["domains"] == {"toy": ["a", "b"], "two": ["x", "y"]}
    m["runs"] = [r for r in m["runs"] if r.dataset == "toy"]
    assert sorted(r.path for r in m["runs"]) == sorted(r.path for r in b)
    assert m["info"]["n_hparams"] == 2
    assert m["runs"][0].hparams == b[0].hparams  # tuples survive JSON
    with open(os.path.join(root, P.MANIFEST), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not a valid sweep manifest"):
        P.read_manifest(root)
    with pytest.raises(FileNotFoundError, match="not a domain-generalization sweep"):
        P.read_manifest(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------- end to end


def _dg(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "experiments.dg", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


def test_bad_arguments_are_one_line_exit_2(tmp_path):
    p = _dg("--datasets=rotated_digits", "--test_domains=99", f"--workdir={tmp_path}", cwd=ROOT)
    assert p.returncode == 2 and "error:" in p.stderr and "Traceback" not in p.stderr
    p = _dg("--methods=erm", "--set=train.stepz=3", f"--workdir={tmp_path}", cwd=ROOT)
    assert p.returncode == 2 and "train.stepz" in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists(os.path.join(tmp_path, P.MANIFEST))


@pytest.mark.slow
def test_leave_one_domain_out_sweep_end_to_end(tmp_path):
    """ERM and IRM on three rotated-digits domains (tests/configs/dg_small.py), held-out
    60°, two draws, the LOO runs, 4 steps each: every rule reports, repeating the command
    trains nothing new, and experiments.report writes the same tables."""
    args = [
        f"--config={os.path.join(ROOT, 'tests', 'configs', 'dg_small.py')}",
        "--datasets=rotated_digits",
        "--methods=erm,irm",
        "--test_domains=60",
        "--n_hparams=2",
        "--loo",
        f"--workdir={tmp_path}",
    ]
    p = _dg(*args, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "12 runs planned, 12 to train" in p.stderr
    runs = P.read_manifest(str(tmp_path))["runs"]
    assert len(runs) == 12
    assert {r.val for r in runs} == {None, "0", "30"}
    # Each run trained with its coordinates' config.
    for r in runs:
        cfg = json.load(open(os.path.join(tmp_path, r.path, "config.json")))  # flat keys
        assert cfg["data.task_kwargs"]["test"] == "60"
        assert cfg["data.task_kwargs"]["val"] == (r.val or "")
        assert cfg["seed"] == r.seed and cfg["optim.lr"] == pytest.approx(r.hparams["optim.lr"])
        for key, value in r.hparams.items():
            if key.startswith("method.hparams."):
                assert cfg["method.hparams"][key.split(".")[-1]] == pytest.approx(value)
    sel = P.select(str(tmp_path), runs)
    for m in ("erm", "irm"):
        for rule in P.RULES:
            assert sel[("rotated_digits", m, "60", rule)]["n"] == 1
    md = open(os.path.join(tmp_path, "report", "dg.md")).read()
    assert "### rotated_digits" in md and "| irm |" in md
    again = _dg(*args, cwd=ROOT)
    assert again.returncode == 0 and "12 runs planned, 0 to train" in again.stderr
    # experiments.report writes the same DG tables beside its own.
    out = tmp_path / "rep"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.report",
            f"--workdir={tmp_path}",
            f"--out={out}",
            "--noplots",
            "--nofeatures",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "dg.md").read_text() == open(os.path.join(tmp_path, "report", "dg.md")).read()
    assert "dg.md" in (out / "report.md").read_text()

"""The sweep: hyperparameter grids, run directories, skipping, parallel subprocesses."""

import json
import os
import subprocess
import sys

import pytest

from experiments import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "tests/configs/tiny.py:dann,moons"
SHORT = [
    "train.steps=10",
    "train.log_every=5",
    "train.eval_every=5",
    "train.checkpoint_every=10",
]


def test_grid_parsing_and_run_names(tmp_path):
    grid = sweep.parse_grid(["method.weight=0.1,0.3,1.0", "method.hparams.hidden=(64,),(8, 8)"])
    assert grid == [("method.weight", [0.1, 0.3, 1.0]), ("method.hparams.hidden", [(64,), (8, 8)])]
    assert sweep.parse_grid(["data.task=moons,digits->digits_m"]) == [
        ("data.task", ["moons", "digits->digits_m"])
    ]
    for bad, msg in [("method.weight", "key=v1"), ("a=1", "twice")]:
        with pytest.raises(ValueError, match=msg):
            sweep.parse_grid([bad, "a=2"] if bad == "a=1" else [bad])
    runs = sweep.plan([TINY], ["0", "1"], ["method.weight=0.1,1.0", "optim.lr=0.01"], "r")
    assert len(runs) == 4
    assert runs[0].workdir == os.path.join(
        "r", "tiny_dann_moons", "method.weight=0.1__optim.lr=0.01", "seed_0"
    )
    assert runs[3].workdir.endswith(os.path.join("method.weight=1__optim.lr=0.01", "seed_1"))
    # Without a grid the layout is unchanged: <workdir>/<config name>/seed_<s>.
    assert sweep.plan(["configs/dann_digits_m.py"], ["2"], [], "r")[0].workdir == os.path.join(
        "r", "dann_digits_m", "seed_2"
    )
    c = sweep.make_config(runs[3], SHORT)
    assert (c.seed, c.method.weight, c.optim.lr, c.train.steps) == (1, 1.0, 0.01, 10)
    cmd = sweep.command(runs[3], SHORT)
    assert "--config.method.weight=1.0" in cmd and "--config.seed=1" in cmd
    assert "--config.train.steps=10" in cmd
    bad = sweep.plan([TINY], ["0"], ["method.wieght=1"], "r")[0]
    with pytest.raises(ValueError, match="Unknown config key 'method.wieght'"):
        sweep.make_config(bad, [])


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def test_two_by_two_sweep_then_rerun_skips_and_parallel_adds_runs(tmp_path):
    # 2 weights x 2 seeds, in-process (the default sequential mode).
    runs = sweep.plan([TINY], ["0", "1"], ["method.weight=0.1,1.0"], str(tmp_path))
    sweep.run_sequential(runs, SHORT)
    assert all(r.done() for r in runs)
    # Rerun through the CLI with one more seed of one weight, in a subprocess: the four
    # finished runs are skipped, the new one runs; the table has one row per weight.
    args = [f"--config={TINY}", f"--workdir={tmp_path}", "--parallel=2"]
    args += [f"--set={s}" for s in SHORT]
    out = _cli(*args, "--seeds=0,1,2", "--grid=method.weight=0.1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("done, skipped") == 2, out.stderr[-3000:]
    if len(os.sched_getaffinity(0)) >= 2:  # each subprocess pinned to its own cores
        assert "seed_2: cores [" in out.stderr, out.stderr[-3000:]
    new = tmp_path / "tiny_dann_moons" / "method.weight=0.1" / "seed_2"
    assert (new / "results.json").exists() and (new / "run.log").exists()
    # The subprocess run has the config the in-process one would have had.
    a = json.load(open(new / "config.json"))
    b = json.load(
        open(tmp_path / "tiny_dann_moons" / "method.weight=0.1" / "seed_0" / "config.json")
    )
    assert {k for k in a if a[k] != b[k]} == {"seed"}
    table = (tmp_path / "results.md").read_text()
    assert "| dann | method.weight=0.1 | " in table and "| 0,1,2 |" in table
    assert "| dann | method.weight=1 | " in table and table in out.stdout + "\n"
    # The 2x2 sweep rerun (sequential mode) skips all four runs and trains nothing.
    out = _cli(*args[:2], *args[3:], "--seeds=0,1", "--grid=method.weight=0.1,1.0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("done, skipped") == 4 and "target test acc" not in out.stderr
    # A finished run of another config in the same directory is an error, not "done": the
    # directory names hold the grid, not --set (here a changed learning rate).
    done = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")}
    out = _cli(*args[:2], *args[3:], "--set=optim.lr=0.5", "--seeds=0", "--grid=method.weight=0.1")
    assert out.returncode == 2, out.stderr[-3000:]
    assert "holds a run with a different config" in out.stderr and "optim.lr" in out.stderr
    assert "done, skipped" not in out.stderr and "target test acc" not in out.stderr
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")} == done
    # ... and so is one that finished at fewer steps than asked for.
    with pytest.raises(ValueError, match="finished run of train.steps=10, not the 20"):
        sweep.check_run(runs[0], [*SHORT, "train.steps=20"])
    sweep.check_run(runs[0], SHORT)  # the same config: fine


def test_core_slots_split_the_allowed_cores_disjointly():
    cores = sorted(os.sched_getaffinity(0))
    slots = sweep.core_slots(len(cores))
    assert [sorted(s) for s in slots] == [[c] for c in cores]
    one = sweep.core_slots(1)
    assert one == [set(cores)]
    assert sweep.core_slots(len(cores) + 1) is None


def test_vmapped_sweep_matches_sequential_runs(tmp_path):
    seq = sweep.plan([TINY], ["0", "1"], [], str(tmp_path / "seq"))
    vm = sweep.plan([TINY], ["0", "1"], [], str(tmp_path / "vm"))
    sweep.run_sequential(seq, SHORT)
    sweep.run_vmapped(vm, SHORT)
    for a, b in zip(seq, vm):
        ra = json.load(open(os.path.join(a.workdir, "results.json")))
        rb = json.load(open(os.path.join(b.workdir, "results.json")))
        assert rb["vmap_members"] == 2 and rb["seed"] == ra["seed"]
        for key in ("source_test_acc", "target_test_acc"):
            assert abs(ra[key] - rb[key]) <= 0.01, (key, ra[key], rb[key])
    # The two seeds really differ (each member has its own init and data order).
    m0, m1 = (open(os.path.join(r.workdir, "metrics.jsonl")).read() for r in vm)
    assert m0 != m1
    # A rerun skips the finished group without training.
    before = os.path.getmtime(os.path.join(vm[0].workdir, "results.json"))
    sweep.run_vmapped(vm, SHORT)
    assert os.path.getmtime(os.path.join(vm[0].workdir, "results.json")) == before

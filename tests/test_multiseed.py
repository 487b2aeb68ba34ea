"""Vmapped members (seeds, traced hyperparameters) equal separate runs of the trainer."""

import copy
import json
import os

import numpy as np
import pytest

from tests.configs import tiny
from tljax import multiseed
from tljax.train import train_and_evaluate


def _config(arg, steps=10):
    c = tiny.get_config(arg)
    c.train.steps = steps
    c.train.log_every = 5
    c.train.eval_every = 5
    c.train.checkpoint_every = 5
    return c


def _lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(ln) for ln in f]


def _assert_same_run(a_dir, b_dir, a, b):
    for key in ("steps", "source_test_acc", "target_test_acc", "target_test_mean_class_acc"):
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    assert a["by_selection_rule"].keys() == b["by_selection_rule"].keys()
    for rule, sel in a["by_selection_rule"].items():
        assert sel["step"] == b["by_selection_rule"][rule]["step"], rule
    la, lb = _lines(a_dir), _lines(b_dir)
    assert [(r["step"], r["kind"]) for r in la] == [(r["step"], r["kind"]) for r in lb]
    for ra, rb in zip(la, lb):
        for k, v in ra.items():
            if k not in ("step", "kind", "steps_per_s"):
                # float reduction order (a vmapped conv is a grouped conv) may differ
                np.testing.assert_allclose(v, rb[k], rtol=1e-4, atol=1e-5, err_msg=k)


# A vmapped program (grouped convolutions) and separate ones agree to float rounding only
# with full float32 matmuls and convolutions (GPUs default to TF32, ~1e-3).
@pytest.mark.usefixtures("highest_precision")
def test_vmapped_members_equal_separate_runs_lenet(tmp_path):
    # Two members in one program: different seeds (init, PRNG, data order) and different
    # traced hyperparameters (the method weight and the learning rate).
    base = _config("dann,digits->digits_m")
    members = []
    for seed, weight, lr in [(0, 0.1, 0.02), (1, 1.0, 0.05)]:
        c = copy.deepcopy(base)
        c.seed, c.method.weight, c.optim.lr = seed, weight, lr
        members.append(c)
    vm = multiseed.train_members(members, str(tmp_path / "vm"))
    dirs = multiseed.member_dirs(members, str(tmp_path / "vm"))
    assert dirs[0].endswith(os.path.join("method.weight=0.1__optim.lr=0.02", "seed_0"))
    assert [r["seed"] for r in vm] == [0, 1] and all(r["vmap_members"] == 2 for r in vm)
    for c, d, b in zip(members, dirs, vm):
        a = train_and_evaluate(c, str(tmp_path / f"sep_{c.seed}"))
        _assert_same_run(tmp_path / f"sep_{c.seed}", d, a, b)
    assert _lines(dirs[0])[0]["loss"] != _lines(dirs[1])[0]["loss"]
    # Same files as a single run; a rerun returns the saved results without training.
    steps = sorted(int(s) for s in os.listdir(os.path.join(dirs[1], "checkpoints")))
    assert steps[-1] == 10
    before = os.path.getmtime(os.path.join(dirs[0], "results.json"))
    again = multiseed.train_members(members, str(tmp_path / "vm"))
    assert again == json.loads(json.dumps(vm))
    assert os.path.getmtime(os.path.join(dirs[0], "results.json")) == before


def test_vmapped_seeds_resume_from_shared_checkpoint(tmp_path):
    config = _config("source_only,moons")
    full = multiseed.train_seeds(config, [0, 1], str(tmp_path / "full"))
    config.train.steps = 5
    multiseed.train_seeds(config, [0, 1], str(tmp_path / "cut"))
    for s in (0, 1):
        os.remove(tmp_path / "cut" / f"seed_{s}" / "results.json")
    config.train.steps = 10
    resumed = multiseed.train_seeds(config, [0, 1], str(tmp_path / "cut"))
    for s, a, b in zip((0, 1), full, resumed):
        assert b["trained_steps_this_run"] == 5
        _assert_same_run(tmp_path / "full" / f"seed_{s}", tmp_path / "cut" / f"seed_{s}", a, b)


def test_in_memory_run_without_workdir_matches():
    config = _config("source_only,moons", steps=5)
    a, b = multiseed.train_seeds(config, [3, 4])
    assert a["seed"] == 3 and b["seed"] == 4 and a["steps"] == 5
    assert "last" in a["by_selection_rule"]


def test_members_that_change_shapes_are_refused():
    a = _config("dann,moons")
    b = copy.deepcopy(a)
    b.data.batch_size = 8
    with pytest.raises(ValueError, match=r"data.batch_size.*may differ only in 'seed'"):
        multiseed.member_differences([a, b])
    with pytest.raises(ValueError, match="at least one"):
        multiseed.member_differences([])

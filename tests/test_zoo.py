"""experiments.zoo: the zoo's plan, the choice of fine-tuning rate, the command end to end."""

import json
import os
import subprocess
import sys

import pytest
import scipy.stats

from configs import zoo as zoo_cfg
from experiments import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "experiments.zoo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_plan_covers_every_candidate_target_and_rate(tmp_path):
    pre, fine = zoo.plan(
        str(tmp_path),
        ["lenet", "mlp"],
        ["fashion", "simclr", "scratch"],
        ["digits_rot", "fashion_inv"],
        [1.0, 0.1],
        pretrain_steps=7,
        steps=5,
        seed=3,
        max_train=100,
    )
    assert len(pre) == 4  # scratch has no pretraining run
    assert len(fine) == 2 * 6 * 2
    assert len({r.workdir for r in pre + fine}) == len(pre + fine)
    assert all(r.seed == 3 for r in pre + fine)
    # Fashion targets carry the subsample; the scratch candidate starts from nothing.
    inv = [r for r in fine if "/fashion_inv/" in r.workdir]
    assert all("max_train=100" in r.config for r in inv)
    assert all("max_train" not in r.config for r in fine if "/digits_rot/" in r.workdir)
    scratch = [r for r in fine if "_scratch/" in r.workdir]
    assert scratch and all("init=none" in r.config for r in scratch)
    c = zoo_cfg.get_config(fine[0].config.partition(":")[2])
    assert c.model.init_from == zoo.pretrain_dir(str(tmp_path), "lenet", "fashion")
    assert c.train.steps == 5 and c.data.task == "digits_rot"


def test_configs_build_and_refuse_bad_arguments():
    c = zoo_cfg.get_config("role=pretrain,arch=vit_tiny,pretrain=simclr,steps=10")
    assert (c.model.backbone, c.method.name, c.optim.optimizer) == ("vit_tiny", "simclr", "adam")
    c = zoo_cfg.get_config("role=finetune,arch=mlp,target=fashion_inv,lr_scale=0.1,max_train=50")
    assert c.optim.lr == pytest.approx(0.001) and c.data.task_kwargs.max_train == 50
    for arg, msg in (
        ("role=pretrain,arch=resnet", "unknown architecture 'resnet'"),
        ("role=pretrain,pretrain=scratch", "unknown pretraining 'scratch'"),
        ("role=finetune,target=moons", "unknown target 'moons'"),
        ("role=finetune,target=digits_rot,max_train=5", "max_train applies to Fashion"),
        ("role=eval", "role must be"),
    ):
        with pytest.raises(ValueError, match=msg):
            zoo_cfg.get_config(arg)


def test_check_args():
    assert zoo.check_args(["lenet"], ["fashion", "scratch"], ["digits_rot"], ["1", "0.3"]) == [
        1.0,
        0.3,
    ]
    for args, msg in (
        ((["resnet"], ["fashion"], ["digits_rot"], ["1"]), "unknown architecture"),
        ((["lenet"], ["imagenet"], ["digits_rot"], ["1"]), "unknown pretraining"),
        ((["lenet"], ["fashion", "scratch"], ["moons"], ["1"]), "unknown target"),
        ((["lenet"], ["fashion", "scratch"], ["digits_rot"], ["1", "1.0"]), "distinct positive"),
        ((["lenet"], ["fashion", "scratch"], ["digits_rot"], ["-1"]), "distinct positive"),
        ((["lenet"], ["fashion"], ["digits_rot"], ["1"]), "at least 2 candidates"),
    ):
        with pytest.raises(ValueError, match=msg):
            zoo.check_args(*args)


def test_choose_rate_by_held_out_accuracy_first_of_ties():
    runs = {
        1.0: {"source_val_acc": 0.8, "target_test_acc": 0.6},
        0.1: {"source_val_acc": 0.9, "target_test_acc": 0.5},  # the test split never chooses
        0.01: {"source_val_acc": 0.9, "target_test_acc": 0.7},
    }
    assert zoo.choose_rate(runs) == (0.1, runs[0.1])
    with pytest.raises(KeyError, match="source_val_acc"):
        zoo.choose_rate({1.0: {"target_test_acc": 0.5}})


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    out = _cli(f"--workdir={tmp_path}", "--archs=resnet")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: unknown architecture(s) ['resnet']; valid: {sorted(zoo_cfg.ARCHS)}."
    ]
    assert not os.listdir(tmp_path)  # nothing trained
    out = _cli(f"--workdir={tmp_path}", "--archs=vgg11_bn,lenet")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: vgg11_bn needs --image_size >= 32, got 28."


@pytest.mark.slow
def test_zoo_end_to_end_and_resumes_for_free(tmp_path):
    args = [
        f"--workdir={tmp_path}",
        "--archs=mlp,lenet",
        "--pretrainings=digits,scratch",
        "--targets=digits_rot",
        "--lr_scales=1,0.1",
        "--pretrain_steps=10",
        "--steps=10",
    ]
    out = _cli(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "zoo.json").read_text())
    assert "| estimator | Kendall τ | weighted τ |" in (tmp_path / "zoo.md").read_text()
    t = result["targets"]["digits_rot"]
    assert [r["candidate"] for r in t["rows"]] == [
        "mlp_digits",
        "lenet_digits",
        "mlp_scratch",
        "lenet_scratch",
    ]
    accs = [r["accuracy"] for r in t["rows"]]
    for r in t["rows"]:
        # The reported accuracy is the chosen rate's run's, chosen by its held-out accuracy.
        runs = {}
        for s in (1.0, 0.1):
            d = zoo.finetune_dir(str(tmp_path), "digits_rot", *r["candidate"].split("_"), s)
            runs[s] = zoo._results(d)
        scale, chosen = zoo.choose_rate(runs)
        assert r["lr_scale"] == scale and r["accuracy"] == chosen["target_test_acc"]
        assert set(r["scores"]) == {"logme", "leep", "nce", "h_score"}
    for name, tau in t["tau"].items():
        scores = [r["scores"][name] for r in t["rows"]]
        expect = scipy.stats.kendalltau(scores, accs).statistic
        assert tau["kendall_tau"] == pytest.approx(expect, abs=1e-12)
        assert -1 <= tau["weighted_tau"] <= 1
    # The pretrained and the from-scratch candidates differ in their scores.
    assert t["rows"][0]["scores"]["logme"] != t["rows"][2]["scores"]["logme"]

    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")}
    again = _cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[sweep]" not in again.stderr  # nothing trained again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")} == before
    assert json.loads((tmp_path / "zoo.json").read_text())["targets"] == result["targets"]


@pytest.mark.parametrize("arch", sorted(zoo_cfg.ARCHS))
def test_top_block_is_a_proper_part_of_each_backbone(arch):
    import jax

    from tljax import config as config_lib
    from tljax.loop import build

    size = max(28, zoo_cfg.MIN_SIZE.get(arch, 0))
    c = zoo_cfg.finetune(arch, "digits_rot", "none", steps=9, image_size=size)
    config_lib.resolve(c)
    params = build(c)["state"].params
    paths = [
        "/".join(str(k.key) for k in kp) for kp, _ in jax.tree_util.tree_leaves_with_path(params)
    ]
    import re

    backbone = [p for p in paths if p.startswith("model/backbone/")]
    top = [p for p in backbone if re.match(zoo_cfg.TOP_BLOCK[arch], p)]
    assert 0 < len(top) < len(backbone), (arch, backbone)
    rules = zoo_cfg.freeze_rules("gradual_unfreeze", arch, 9)
    assert rules[1] == (zoo_cfg.TOP_BLOCK[arch], (1.0, 3)) and rules[2][1] == (1.0, 6)
    probe = zoo_cfg.finetune(arch, "digits_rot", "none", strategy="linear_probe", image_size=size)
    assert probe.optim.freeze[0] == (r"^model/(backbone|bottleneck)/", None)
    # BatchNorm statistics are frozen with the backbone in a linear probe.
    assert (probe.method.name == "finetune") == (arch in zoo_cfg.BATCHNORM)


def test_strategies_plan_and_a_zoo_keeps_its_settings(tmp_path):
    _, fine = zoo.plan(
        str(tmp_path),
        ["lenet"],
        ["digits", "scratch"],
        ["digits_rot"],
        [1.0],
        pretrain_steps=7,
        steps=5,
        seed=0,
        max_train=0,
        strategies=["finetune", "linear_probe"],
        image_size=32,
    )
    assert sorted(r.workdir.split("/")[-4] for r in fine) == ["finetune"] * 2 + ["linear_probe"] * 2
    assert all("image_size=32" in r.config for r in fine)
    with pytest.raises(ValueError, match="must include finetune"):
        zoo.check_args(["lenet"], ["digits", "scratch"], ["digits_rot"], ["1"], ["linear_probe"])
    setup = dict(image_size=28, pretrain_steps=10, steps=10, seed=0, max_train=2000)
    zoo.check_setup(str(tmp_path), setup)
    zoo.check_setup(str(tmp_path), dict(setup))  # the same settings: fine
    with pytest.raises(ValueError, match=r"other settings \(steps: 10 there, 20 now\)"):
        zoo.check_setup(str(tmp_path), dict(setup, steps=20))


def test_gpt2_transfer_configs():
    import re

    import jax
    from flax import nnx

    from configs.text import gpt2_transfer as g
    from tljax.models.gpt2 import gpt2

    pre = g.get_config("role=pretrain,minilm=/nonexistent")
    assert (pre.data.task, pre.model.init_from, pre.train.steps) == ("reviews", "", 300)
    scratch = g.get_config("strategy=scratch,init=/x")
    assert scratch.data.task == "products" and scratch.model.init_from == ""
    assert g.get_config("strategy=finetune,init=/x").model.init_from == "/x"
    with pytest.raises(ValueError, match="needs init"):
        g.get_config("strategy=linear_probe")
    with pytest.raises(ValueError, match="unknown strategy 'lora'"):
        g.get_config("strategy=lora,init=/x")
    # The gradual-unfreezing groups are proper parts of this GPT-2's parameters.
    model = gpt2((48,), rngs=nnx.Rngs(0), config=dict(g.GPT2_SMALL_CPU), pool="mean")
    paths = [
        "model/backbone/" + "/".join(str(getattr(k, "key", k)) for k in kp)
        for kp, _ in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
    ]
    rules = g.get_config("strategy=gradual_unfreeze,init=/x,steps=30").optim.freeze
    assert rules[1][1] == (1.0, 10) and rules[2][1] == (1.0, 20)
    top = [p for p in paths if re.match(rules[1][0], p)]
    assert 0 < len(top) < len(paths) and all("/h/0/" not in p for p in top)

"""The transfer configs, the single-domain tasks, pretrain → ``init_from`` → L2-SP end to
end, and the resumable table script."""

from __future__ import annotations

import glob
import importlib
import json
import os

import numpy as np
import pytest

from configs.transfer import common
from experiments import transfer_table
from tljax.checkpoint import Checkpointer, load_trained
from tljax.config import validate
from tljax.loop import build
from tljax.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "transfer", "*.py"))
    if not os.path.basename(p).startswith(("_", "common"))
)


@pytest.fixture(scope="module")
def fake_pretrained(tmp_path_factory):
    """A checkpoint with a 10-class head on the 36-d features of the tiny LeNet."""
    path = tmp_path_factory.mktemp("pretrained")
    head = {"kernel": np.zeros((36, 10), np.float32), "bias": np.zeros(10, np.float32)}
    with Checkpointer(str(path)) as ckpt:
        ckpt.save(1, {"params": {"model": {"head": head}}, "rest": {"x": head["bias"]}}, {})
    return str(path)


def test_every_strategy_has_a_config():
    assert set(common.STRATEGIES) | {"pretrain_supervised", "pretrain_simclr"} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_validates_and_builds(name, fake_pretrained):
    module = importlib.import_module(f"configs.transfer.{name}")
    config = module.get_config("labels=2")
    validate(config)
    if name.startswith("pretrain_"):
        assert config.data.task == "fashion"
        return
    assert config.data.task == "digits" and config.data.labels_per_class == 2
    config.model.init_from = ""  # the pretrained weights are not needed to build
    _tiny(config)  # the rules match by name; a small network builds fast
    if name == "lwf":
        config.method.hparams.old_head_from = fake_pretrained
    parts = build(config)
    frozen = {p: r is None for p, (_, r) in parts["report"].items()}
    if name == "linear_probe":
        assert all(v for p, v in frozen.items() if p.startswith("model/backbone/"))
        assert not frozen["model/head/kernel"]
    elif name == "gradual_unfreeze":
        starts = {p: r[1] for p, (_, r) in parts["report"].items() if isinstance(r, tuple)}
        assert starts["model/backbone/conv2/kernel"] < starts["model/backbone/conv1/kernel"]
    elif name == "discriminative_lr":
        assert parts["report"]["model/backbone/conv1/kernel"][1] == 0.1
    else:
        assert name == "partial_freeze" or not any(frozen.values())


def test_single_domain_task_with_few_labels():
    parts = build(_tiny(common.transfer("scratch", "labels=2")))
    task = parts["task"]
    assert np.bincount(task.source.train.y).tolist() == [2] * 10
    assert task.target.test is task.source.test  # evaluated on the digits test split
    assert len(task.target.train) > 1000  # unlabelled images: never used by these methods


def _tiny(config):
    """The network of tests/inductive/helpers.py (12×12, channels (3, 4), SAME padding)."""
    config.data.image_size = 12
    config.model.backbone_kwargs.channels = (3, 4)
    config.model.backbone_kwargs.padding = "SAME"
    if config.model.bottleneck_dim:
        config.model.bottleneck_dim = 6
    config.train.progress = False
    config.train.tensorboard = False
    config.train.eval_batch_size = 200
    return config


def test_simclr_pretraining_then_l2sp_from_its_checkpoint(tmp_path):
    pre = _tiny(common.pretrain("simclr", "steps=10"))
    pre.data.task = "digits"  # same code path as Fashion, offline and small
    pre.data.batch_size = 16
    res = train_and_evaluate(pre, str(tmp_path / "pre"))
    assert res["steps"] == 10 and 0 <= res["source_test_acc"] <= 1
    config = _tiny(common.transfer("l2sp", f"labels=5,steps=2,pretrain={tmp_path / 'pre'}"))
    res = train_and_evaluate(config, str(tmp_path / "l2sp"))
    assert res["steps"] == 2
    pretrained, _ = load_trained(str(tmp_path / "pre"))
    _, rest = load_trained(str(tmp_path / "l2sp"))
    for path in ("backbone/conv1/kernel", "backbone/conv2/bias"):
        np.testing.assert_array_equal(rest[f"method/start/{path}"], pretrained[f"model/{path}"])


def test_table_plan_skips_finished_runs_and_reports(tmp_path):
    root = str(tmp_path)
    kw = dict(seeds=[0, 1], labels=[1, 0], strategies=["scratch", "l2sp"], steps=30)
    runs = transfer_table.plan(root, pretrainings=["supervised", "simclr"], pretrain_steps=5, **kw)
    # 2 pretrainings + scratch (2 labels × 2 seeds) + l2sp (2 pretrainings × 2 × 2).
    assert len(runs) == 2 + 4 + 8
    assert runs[0][0].endswith("pretrain_supervised") and runs[0][1].train.steps == 5
    l2sp = [c for d, c in runs if "/l2sp/" in d]
    assert {c.model.init_from for c in l2sp} == {
        os.path.abspath(transfer_table.pretrain_dir(root, p)) for p in ("supervised", "simclr")
    }
    assert {(c.seed, c.data.data_seed) for c in l2sp} == {(0, 0), (1, 1)}
    calls = []

    def fake_train(config, workdir):
        calls.append(workdir)
        os.makedirs(workdir, exist_ok=True)
        acc = 0.5 if "scratch" in workdir else 0.75
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"step": 10, "kind": "eval", "target_test_acc": acc / 2}) + "\n")
        r = dict(target_test_acc=acc, source_test_acc=acc, wall_time_s=2.0, steps=30)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(r, f)
        return r

    assert transfer_table.run_all(runs[:3], fake_train) == 3
    assert transfer_table.run_all(runs, fake_train) == len(runs) - 3  # the first 3 skipped
    assert len(calls) == len(runs)
    text = transfer_table.table(root, pretrainings=["supervised", "simclr"], **kw)
    assert "| none | scratch | 50.0 ± 0.0 [25.0 ± 0.0] | 50.0 ± 0.0 [25.0 ± 0.0] | 2.0 |" in text
    assert "| simclr | l2sp | 75.0 ± 0.0 [37.5 ± 0.0]" in text
    with pytest.raises(ValueError, match="Unknown strategy"):
        transfer_table.plan(
            root, pretrainings=["supervised"], pretrain_steps=5, **{**kw, "strategies": ["x"]}
        )

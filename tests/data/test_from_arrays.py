"""tljax.data.from_arrays / register_arrays: a task from arrays, unlabelled target."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from tljax.data import from_arrays, register_arrays, tasks
from tljax.data.arrays import UNLABELED, ArrayTask, is_unlabeled
from tljax.data.stream import DomainPairStream
from tljax.data.toys import two_moons_task


def _arrays(n=100, m=60, d=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, d))  # float64: converted to float32
    ys = np.arange(n) % k
    xt = rng.normal(size=(m, d)) + 1.0
    return xs, ys, xt


def test_shapes_labels_and_holdout():
    xs, ys, xt = _arrays()
    task = from_arrays(source=(xs, ys), target=xt, name="mine", holdout=0.2, seed=3)
    assert isinstance(task, ArrayTask) and task.name == "mine" and task.num_classes == 3
    assert len(task.source.train) == 79 and len(task.source.test) == 21
    assert task.source.train.x.dtype == np.float32 and task.source.train.y.dtype == np.int32
    # Stratified: every class (34, 33, 33 examples) loses round(0.2 * its count).
    assert np.bincount(task.source.test.y).tolist() == [7, 7, 7]
    # Disjoint and together the whole source (rows are unique here).
    all_rows = np.concatenate([task.source.train.x, task.source.test.x])
    assert {tuple(r) for r in all_rows} == {tuple(r) for r in xs.astype(np.float32)}
    # Seeded: the same seed, the same split; another seed, another one.
    again = from_arrays(source=(xs, ys), target=xt, holdout=0.2, seed=3)
    other = from_arrays(source=(xs, ys), target=xt, holdout=0.2, seed=4)
    np.testing.assert_array_equal(again.source.test.x, task.source.test.x)
    assert not np.array_equal(other.source.test.x, task.source.test.x)
    # Read-only copies: the caller's arrays are not shared.
    assert not task.source.train.x.flags.writeable
    xs[:] = 0
    assert task.source.train.x.any()


def test_target_needs_no_labels():
    xs, ys, xt = _arrays()
    task = from_arrays(source=(xs, ys), target=xt)
    assert is_unlabeled(task.target.train)
    assert (task.target.train.y == UNLABELED).all() and len(task.target.train) == 60
    assert len(task.target.test) == 0 and task.target.test.x.shape[1:] == (3,)
    task.validate()  # the placeholder is accepted in target.train
    # The target stream yields inputs only: the placeholder never reaches a method.
    batch = next(DomainPairStream(task, 16, seed=0))
    assert set(batch["target"]) == {"image"} and set(batch["source"]) == {"image", "label"}
    # A tuple (x, y) target: its labels are dropped.
    task2 = from_arrays(source=(xs, ys), target=(xt, np.zeros(60)))
    assert is_unlabeled(task2.target.train)


def test_given_test_splits_and_num_classes():
    xs, ys, xt = _arrays()
    task = from_arrays(
        source=(xs, ys),
        target=xt,
        source_test=(xs[:10], ys[:10]),
        target_test=(xt[:5], np.array([0, 1, 2, 4, 4])),
        num_classes=5,
    )
    assert len(task.source.train) == 100 and len(task.source.test) == 10  # no hold-out
    assert task.target.test.y.tolist() == [0, 1, 2, 4, 4] and task.num_classes == 5
    # Inferred: 1 + the largest label of any labelled split.
    inferred = from_arrays(source=(xs, ys), target=xt, target_test=(xt[:2], np.array([0, 6])))
    assert inferred.num_classes == 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(source=(np.zeros(10), np.zeros(10))), r"source\[0\].*at least 2 dimensions.*\(10,\)"),
        (dict(source=(np.zeros((10, 3)), np.zeros(9))), r"9 labels for 10 inputs"),
        (dict(source=(np.zeros((10, 3)), np.zeros((10, 1)))), r"1-D array.*\(10, 1\)"),
        (dict(source=(np.zeros((10, 3)), np.arange(10) - 1)), r"negative label -1"),
        (dict(source=(np.zeros((10, 3)), np.full(10, 0.5))), r"labels must be integers.*unique"),
        (dict(source=(np.zeros((10, 3)), np.array(list("ab") * 5))), r"dtype <U1"),
        (dict(source=np.zeros((10, 3))), r"source must be a pair \(x, y\)"),
        (dict(target=np.zeros((5, 4))), r"shapes differ.*'source': \(3,\).*'target': \(4,\)"),
        (dict(target=np.full((5, 3), np.nan)), r"target has a non-finite value"),
        (dict(target=np.zeros((5, 3), bool)), r"dtype bool; valid: floating"),
        (dict(num_classes=2), r"label 2 is out of range for num_classes=2; valid labels are 0..1"),
        (dict(num_classes=1), r"num_classes must be >= 2, got 1"),
        (dict(holdout=1.5), r"holdout must be in \(0, 1\).*1.5"),
        (dict(holdout=0.01), r"leaves 30 to train on and 0 to test"),
        (dict(target_test=(np.zeros((4, 3)), np.zeros(3))), r"target_test\[1\].*3 labels for 4"),
        (dict(name=""), r"name must be a non-empty string"),
    ],
)
def test_errors_say_what_and_the_valid_values(kwargs, match):
    args = dict(source=(np.zeros((30, 3)), np.arange(30) % 3), target=np.zeros((5, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        from_arrays(**args)


def test_npy_paths(tmp_path):
    xs, ys, xt = _arrays()
    for name, a in (("xs", xs), ("ys", ys), ("xt", xt)):
        np.save(tmp_path / f"{name}.npy", a)
    task = from_arrays(
        source=(tmp_path / "xs.npy", str(tmp_path / "ys.npy")), target=tmp_path / "xt.npy"
    )
    assert len(task.source.train) + len(task.source.test) == 100
    with pytest.raises(FileNotFoundError, match="no such file"):
        from_arrays(source=(xs, ys), target=tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"must name a \.npy file"):
        from_arrays(source=(xs, ys), target=tmp_path / "xt.csv")


def test_register_arrays():
    xs, ys, xt = _arrays()
    register_arrays("test/arrays", source=(xs, ys), target=xt, holdout=0.1)
    try:
        a = tasks.get_task("test/arrays", data_seed=1)
        assert a.name == "test/arrays" and tasks.get_task("test/arrays", data_seed=1) is a
        b = tasks.get_task("test/arrays", data_seed=2)  # the hold-out follows data_seed
        assert not np.array_equal(a.source.test.x, b.source.test.x)
    finally:
        tasks._REGISTERED.pop("test/arrays", None)
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['traget'\]"):
        register_arrays("x", source=(xs, ys), traget=xt)
    with pytest.raises(TypeError, match=r"needs \['target'\]"):
        register_arrays("x", source=(xs, ys))


CONFIG_FILE = """
from tljax.config import base_config
from tljax.data import register_arrays

def get_config():
    register_arrays("test/moons_arrays", source=("{d}/xs.npy", "{d}/ys.npy"), target="{d}/xt.npy")
    c = base_config()
    c.data.task = "test/moons_arrays"
    c.data.batch_size = 16
    c.model.backbone = "mlp"
    c.model.backbone_kwargs.hidden = (8,)
    c.method.name = "dann"
    c.method.hparams.hidden = (8,)
    c.train.steps = 20
    c.train.log_every = 10
    c.train.eval_every = 10
    c.train.checkpoint_every = 20
    c.train.progress = False
    c.train.tensorboard = False
    return c
"""


def test_config_file_trains_without_target_test(tmp_path):
    """A config file registers the task in one line; the run skips the target test
    evaluation (NaN) and still logs the unsupervised selection scores."""
    from tljax.loop import train_and_evaluate

    moons = two_moons_task(n_train=100, n_test=10)
    np.save(tmp_path / "xs.npy", moons.source.train.x)
    np.save(tmp_path / "ys.npy", moons.source.train.y)
    np.save(tmp_path / "xt.npy", moons.target.train.x)
    path = tmp_path / "my_config.py"
    path.write_text(CONFIG_FILE.format(d=tmp_path))
    spec = importlib.util.spec_from_file_location("my_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        results = train_and_evaluate(module.get_config(), str(tmp_path / "run"))
    finally:
        tasks._REGISTERED.pop("test/moons_arrays", None)
    assert results["steps"] == 20 and 0 <= results["source_test_acc"] <= 1
    assert math.isnan(results["target_test_acc"])
    evals = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    evals = [e for e in evals if e.get("kind") == "eval"]
    assert evals and all(np.isfinite(e["target_neg_entropy"]) for e in evals)


def test_empty_split_evaluates_to_nan():
    """What the trainer does with a task without a target test split."""
    from tljax import evaluate

    calls = []

    def eval_fn(params, rest, x):
        calls.append(x.shape)
        return np.zeros((x.shape[0], 4)), np.zeros((x.shape[0], 8))

    logits, feats = evaluate.predict(eval_fn, None, None, np.zeros((0, 3)), batch_size=16)
    assert logits.shape == (0, 4) and feats.shape == (0, 8) and calls == [(16, 3)]
    assert math.isnan(evaluate.accuracy(logits, np.zeros(0, np.int32)))
    assert math.isnan(evaluate.mean_class_accuracy(logits, np.zeros(0, np.int32), 4))


def test_target_labels_per_class_needs_target_labels():
    from tljax import loop
    from tljax.config import base_config

    xs, ys, xt = _arrays()
    register_arrays("test/unlabelled", source=(xs, ys), target=xt)
    c = base_config()
    c.data.task = "test/unlabelled"
    c.data.batch_size = 8
    c.model.backbone = "mlp"
    c.method.name = "source_only"
    c.data.target_labels_per_class = 2
    try:
        with pytest.raises(ValueError, match=r"target_labels_per_class=2 needs target labels"):
            loop.build(c)
    finally:
        tasks._REGISTERED.pop("test/unlabelled", None)

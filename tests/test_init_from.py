"""Initialising a run from another run's checkpoint, and few-label subsets."""

import numpy as np
import pytest

from tests.configs import tiny
from tljax import optim
from tljax.checkpoint import load_trained
from tljax.data.core import Split, few_labels
from tljax.loop import build
from tljax.train import train_and_evaluate


def test_init_from_copies_matching_params_only(tmp_path):
    c = tiny.get_config("source_only,moons")
    train_and_evaluate(c, str(tmp_path / "pre"))
    trained, _ = load_trained(str(tmp_path / "pre"))
    c2 = tiny.get_config("source_only,moons")
    c2.seed = 5
    c2.model.init_from = str(tmp_path / "pre")
    c2.model.init_include = r"^model/backbone/"
    fresh = build(tiny.get_config("source_only,moons"))["state"].params
    state = build(c2)["state"]
    for path, leaf in zip(optim.param_paths(state.params), _leaves(state.params)):
        if path.startswith("model/backbone/"):
            np.testing.assert_array_equal(leaf, trained[path])
    head = np.asarray(state.params["model"]["head"]["kernel"])
    assert not np.array_equal(head, trained["model/head/kernel"])
    assert not np.array_equal(head, np.asarray(fresh["model"]["head"]["kernel"]))


def test_init_from_errors(tmp_path):
    c = tiny.get_config("source_only,moons")
    c.model.init_from = str(tmp_path / "nothing")
    with pytest.raises(Exception, match="No checkpoint"):
        build(c)
    train_and_evaluate(tiny.get_config("source_only,moons"), str(tmp_path / "pre"))
    c.model.init_from = str(tmp_path / "pre")
    c.model.init_include = "^nope/"
    with pytest.raises(ValueError, match="matches no parameter"):
        build(c)
    wide = tiny.get_config("source_only,moons")
    wide.model.backbone_kwargs.hidden = (32, 16)
    wide.model.init_from = str(tmp_path / "pre")
    with pytest.raises(ValueError, match=r"layers/0/.*shape \(32,\) here but \(16,\)"):
        build(wide)


def test_few_labels_per_class():
    y = np.repeat(np.arange(3), 10).astype(np.int32)
    s = few_labels(Split(np.arange(30.0)[:, None], y), 4, seed=0)
    assert np.bincount(s.y).tolist() == [4, 4, 4]
    assert np.array_equal(s.x[:, 0].astype(int) // 10, s.y)
    again = few_labels(Split(np.arange(30.0)[:, None], y), 4, seed=0)
    np.testing.assert_array_equal(s.x, again.x)


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_missing_init_from_run_creates_nothing(tmp_path):
    """From Python too (not only the CLI's up-front check): a missing run is an error and
    no directory appears where it was named."""
    from tljax.checkpoint import CheckpointError

    missing = tmp_path / "not_trained" / "run"
    config = tiny.get_config("dann,moons")
    config.model.init_from = str(missing)
    with pytest.raises(CheckpointError, match="No checkpoint in .*not_trained"):
        train_and_evaluate(config, str(tmp_path / "wd"))
    assert not (tmp_path / "not_trained").exists()
    with pytest.raises(CheckpointError):
        load_trained(str(missing))
    assert not (tmp_path / "not_trained").exists()

"""Bad data is refused with messages that say what is wrong."""

import numpy as np
import pytest

from tljax.data.core import Domain, Split, Task, split_target_labels, standardize
from tljax.data.stream import DomainPairStream


def _task(y_src=None, target_shape=(4, 4, 3)):
    rng = np.random.default_rng(0)
    y = np.arange(8) % 3 if y_src is None else np.asarray(y_src)
    s = Split(rng.random((8, 4, 4, 3), dtype=np.float32), y.astype(np.int32))
    t = Split(rng.random((8, *target_shape), dtype=np.float32), np.zeros(8, np.int32))
    return Task("t", Domain("src", s, s), Domain("tgt", t, t), num_classes=3)


def test_labels_out_of_range_are_named():
    with pytest.raises(
        ValueError,
        match=r"label 7 in src.train is out of range; valid labels "
        r"are 0..2",
    ):
        _task(y_src=[0, 1, 2, 7, 0, 1, 2, 0]).validate()
    with pytest.raises(ValueError, match="label -1"):
        _task(y_src=[0, 1, 2, -1, 0, 1, 2, 0]).validate()


def test_mismatched_shapes_between_domains_are_reported():
    with pytest.raises(ValueError, match=r"input shapes differ.*\(4, 4, 3\).*\(5, 4, 3\)"):
        _task(target_shape=(5, 4, 3)).validate()


def test_split_length_mismatch():
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        Split(np.zeros((3, 2)), np.zeros(2, np.int32))


def test_stream_never_yields_target_labels_and_is_a_function_of_position():
    task = _task()
    a = DomainPairStream(task, 4, seed=1)
    batches = [next(a) for _ in range(5)]
    assert all(set(b["target"]) == {"image"} for b in batches)
    # With a labelled target subset, its labels travel apart (tests/test_target_labels.py).
    pool, labeled = split_target_labels(task, 1, seed=0)
    semi = DomainPairStream(pool, 4, seed=1, target_labeled=labeled, target_labeled_batch_size=1)
    for b in (next(semi) for _ in range(5)):
        assert set(b["target"]) == {"image"} and set(b["target_labeled"]) == {"image", "label"}
    b = DomainPairStream(task, 4, seed=1, position=3)
    np.testing.assert_array_equal(next(b)["source"]["image"], batches[3]["source"]["image"])
    c = DomainPairStream(task, 4, seed=2)
    assert not np.array_equal(
        next(c)["source"]["label"], batches[0]["source"]["label"]
    ) or not np.array_equal(c.source.indices(0), a.source.indices(0))


def test_stream_epochs_cover_each_example_once():
    task = _task()
    s = DomainPairStream(task, 4, seed=0)
    idx = np.concatenate([s.source.indices(p) for p in range(2)])
    assert sorted(idx) == list(range(8))


def test_batch_larger_than_domain_is_refused():
    with pytest.raises(ValueError, match="batch_size=16.*8 training examples"):
        DomainPairStream(_task(), 16, seed=0)


def test_standardize_uses_source_train_statistics_only():
    task, mean, std = standardize(_task())
    np.testing.assert_allclose(task.source.train.x.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(task.source.train.x.std((0, 1, 2)), 1.0, atol=1e-4)
    raw = _task()
    np.testing.assert_allclose(task.target.test.x, (raw.target.test.x - mean) / std, atol=1e-5)

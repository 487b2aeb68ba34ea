"""Tests of the task registry."""

import gzip
import struct

import numpy as np
import pytest

from tljax.data import tasks
from tljax.data.digits import load_uci_digits
from tljax.data.shifts import invert, mnist_m, rotate

REQUIRED = [
    "moons",
    "digits->digits_m",
    "digits->digits_rot",
    "digits->digits_inv",
    "fashion->fashion_m",
    "fashion->fashion_inv",
    "fashion->fashion_rot",
]
# Registered (text) tasks need options such as a tokenizer: tests/data/test_text_tasks.py.
OFFLINE = [
    n
    for n in tasks.task_names()
    if not n.startswith("fashion") and n not in tasks.registered_task_names()
]


@pytest.fixture
def fashion_dir(tmp_path):
    """A tiny Fashion-MNIST look-alike in the real file layout."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 20)):
        arrays = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            np.arange(n, dtype=np.uint8) % 10,
        )
        for kind, arr in zip(("images-idx3", "labels-idx1"), arrays, strict=True):
            raw = (
                bytes([0, 0, 8, arr.ndim])
                + struct.pack(f">{arr.ndim}I", *arr.shape)
                + arr.tobytes()
            )
            (tmp_path / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(raw))
    return tmp_path


def test_registry_lists_the_required_tasks():
    assert set(REQUIRED) <= set(tasks.task_names())
    assert tasks.task_names() == sorted(tasks.task_names())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="Unknown task 'digits->svhn'") as err:
        tasks.get_task("digits->svhn")
    assert all(name in str(err.value) for name in tasks.task_names())


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_tasks_validate_and_are_cached_read_only(name):
    task = tasks.get_task(name)
    task.validate()
    assert task.name == name and tasks.get_task(name) is task
    assert not task.target.train.x.flags.writeable
    for src, tgt in ((task.source.train, task.target.train), (task.source.test, task.target.test)):
        np.testing.assert_array_equal(src.y, tgt.y)
        assert src.x.dtype == tgt.x.dtype == np.float32


def test_digits_m_is_the_seeded_mnist_m_blend_of_the_source_images():
    task = tasks.get_task("digits->digits_m", data_seed=0)
    train, test = load_uci_digits(split_seed=0)
    assert task.source.train.x.shape[1:] == task.target.test.x.shape[1:] == (28, 28, 3)
    np.testing.assert_array_equal(task.source.train.x[..., 2], train.x[..., 0])
    # Train and test are shifted independently, with seeds [data_seed, 1] and [data_seed, 2].
    np.testing.assert_array_equal(task.target.train.x, mnist_m(train.x, seed=[0, 1]))
    np.testing.assert_array_equal(task.target.test.x, mnist_m(test.x, seed=[0, 2]))
    other = tasks.get_task("digits->digits_m", data_seed=1)
    assert not np.array_equal(other.target.test.x[:5], task.target.test.x[:5])


def test_digits_rot_and_inv_targets():
    src = tasks.get_task("digits->digits_rot", image_size=16, degrees=30.0).source
    rot = tasks.get_task("digits->digits_rot", image_size=16, degrees=30.0).target
    assert rot.test.x.shape[1:] == (16, 16, 1)
    np.testing.assert_array_equal(rot.test.x, rotate(src.test.x, 30.0))
    inv = tasks.get_task("digits->digits_inv")
    np.testing.assert_array_equal(inv.target.train.x, invert(inv.source.train.x))


@pytest.mark.parametrize("shift", ["m", "rot", "inv"])
def test_single_domain_shifted_tasks_are_the_pairs_target_alone(shift):
    pair = tasks.get_task(f"digits->digits_{shift}", data_seed=1, image_size=16)
    one = tasks.get_task(f"digits_{shift}", data_seed=1, image_size=16)
    assert one.source is one.target and one.source.name == f"digits_{shift}"
    for a, b in ((one.source.train, pair.target.train), (one.source.test, pair.target.test)):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    with pytest.raises(TypeError, match="unexpected option"):
        tasks.get_task("digits_inv", degrees=10.0)  # rotation options only for _rot
    assert tasks.get_task("digits_rot", degrees=10.0).source.train.x.shape == (1257, 28, 28, 1)


def test_options_and_arguments_are_checked():
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['degrees'\]"):
        tasks.get_task("digits->digits_m", degrees=10)
    with pytest.raises(ValueError, match="data_seed must be a non-negative integer"):
        tasks.get_task("moons", data_seed=-1)
    small = tasks.get_task("moons", n_train=20, n_test=10, angle=90.0)
    assert len(small.target.train) == 20


def test_fashion_tasks_on_fixture_files(fashion_dir):
    for name in ("fashion->fashion_m", "fashion->fashion_rot", "fashion->fashion_inv"):
        task = tasks.get_task(name, directory=fashion_dir, max_train=25, max_test=50)
        task.validate()
        assert len(task.source.train) == 25 and len(task.target.test) == 20
    one = tasks.get_task("fashion_inv", directory=fashion_dir, max_train=25)
    assert one.source is one.target and len(one.source.train) == 25
    m = tasks.get_task("fashion->fashion_m", directory=fashion_dir, image_size=20, max_train=10)
    assert m.target.train.x.shape == (10, 20, 20, 3)
    with pytest.raises(ValueError, match="max_train must be a positive integer"):
        tasks.get_task("fashion->fashion_inv", directory=fashion_dir, max_train=0)


def test_missing_fashion_raises_install_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        tasks.get_task("fashion->fashion_m", directory=tmp_path / "absent")

"""Benchmark domain pairs as tasks (``data.task = "svhn->mnist"``): resolution through the
task registry, channels and sizes of the protocols, label-set checks, options, and the
error for data that is not prepared. Data: TFDS mock data and the tiny fixtures of the
builders' tests, in each dataset's own layout."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.data.benchmarks.test_benchmarks_builders import class_folders, write_usps
from tests.data.benchmarks.test_benchmarks_loader import write_idx
from tljax.data import tasks
from tljax.data.benchmarks import DatasetNotFoundError, prepare_domain
from tljax.data.benchmarks.builders.office import OFFICE31_CLASSES


def test_svhn_to_mnist_protocol_mnist_as_32x32_rgb(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        task = tasks.get_task("svhn->mnist", image_size=32, data_dir=str(tmp_path))
    assert task.name == "svhn->mnist" and task.num_classes == 10
    assert (task.source.name, task.target.name) == ("svhn", "mnist")
    for split in (task.source.train, task.source.test, task.target.train, task.target.test):
        assert split.x.shape == (6, 32, 32, 3) and split.x.dtype == np.float32
        assert not split.x.flags.writeable
    # MNIST's grey channel is repeated to RGB.
    x = task.target.train.x
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """MNIST (5 train / 3 test) and USPS (5 / 3) prepared TF-free from tiny fixtures."""
    root = tmp_path_factory.mktemp("digits")
    write_idx(root / "mnist_manual")
    write_usps(root / "usps_manual")
    prepare_domain("mnist", data_dir=root / "data", manual_dir=root / "mnist_manual")
    prepare_domain("usps", data_dir=root / "data", manual_dir=root / "usps_manual")
    return str(root / "data")


@pytest.mark.parametrize("name", ["mnist->usps", "usps->mnist"])
def test_mnist_usps_protocol_both_grey_at_28(digits_dir, name):
    task = tasks.get_task(name, image_size=28, data_dir=digits_dir)
    for split in (task.source.train, task.target.train):
        assert split.x.shape == (5, 28, 28, 1)
    assert task.source.test.x.shape == task.target.test.x.shape == (3, 28, 28, 1)
    assert task.source.name == name.split("->")[0]
    # The official test splits are separate arrays.
    assert task.target.test is not task.target.train
    rgb = tasks.get_task(name, image_size=28, data_dir=digits_dir, grayscale_to_rgb=True)
    assert rgb.source.train.x.shape == (5, 28, 28, 3)


def test_max_examples_and_cache(digits_dir):
    a = tasks.get_task("mnist->usps", image_size=16, data_dir=digits_dir, max_examples=2)
    assert len(a.source.train) == len(a.target.train) == len(a.target.test) == 2
    assert a.source.train.x.shape[1:] == (16, 16, 1)
    assert tasks.get_task("mnist->usps", image_size=16, data_dir=digits_dir, max_examples=2) is a


def test_office31_pair_has_one_split_per_domain(tmp_path):
    manual = tmp_path / "manual"
    for domain in ("amazon", "webcam"):
        class_folders(manual / domain / "images", OFFICE31_CLASSES[:2])
        prepare_domain(f"office31/{domain}", data_dir=tmp_path / "data", manual_dir=manual)
    task = tasks.get_task(
        "office31/amazon->office31/webcam", image_size=24, data_dir=str(tmp_path / "data")
    )
    assert task.num_classes == 31
    assert task.source.train.x.shape == (4, 24, 24, 3)
    # Photos are held as uint8 (converted on the device), read-only like every task's.
    assert task.source.train.x.dtype == np.uint8 and not task.source.train.x.flags.writeable
    assert task.target.test is task.target.train  # the whole domain is train and test


def test_missing_data_is_the_loaders_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="'office31/amazon' is not prepared") as e:
        tasks.get_task("office31/amazon->office31/webcam", image_size=32, data_dir=str(tmp_path))
    assert "domain_adaptation_images.tar.gz" in str(e.value)  # what to fetch
    with pytest.raises(DatasetNotFoundError, match="'usps' is not prepared"):
        tasks.get_task("usps->mnist", image_size=28, data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "name",
    ["office31/amazon->office_home/art", "mnist->fashion_mnist", "svhn->domainnet/real"],
)
def test_pairs_with_different_label_sets_are_refused(name):
    with pytest.raises(ValueError, match="do not share one label set"):
        tasks.get_task(name, image_size=32)


def test_unknown_domain_falls_through_to_the_unknown_task_error():
    with pytest.raises(ValueError, match="Unknown task 'office31/amazon->office31/webcm'") as e:
        tasks.get_task("office31/amazon->office31/webcm")
    assert "known_names()" in str(e.value)


def test_bad_options(tmp_path):
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['max_train'\]"):
        tasks.get_task("svhn->mnist", image_size=32, max_train=3)
    with pytest.raises(ValueError, match="max_examples"):
        tasks.get_task("svhn->mnist", image_size=32, max_examples=0)
    with pytest.raises(ValueError, match="grayscale_to_rgb"):
        tasks.get_task("svhn->mnist", image_size=32, grayscale_to_rgb="yes")
    with pytest.raises(ValueError, match="image_size"):
        tasks.get_task("svhn->mnist", image_size=0)
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match="grayscale_to_rgb=False"):
            tasks.get_task(
                "svhn->mnist", image_size=32, data_dir=str(tmp_path), grayscale_to_rgb=False
            )


@pytest.mark.slow
def test_a_digits_config_trains_on_the_prepared_pair(digits_dir, tmp_path):
    # configs/dann_digits.py end to end on the tiny MNIST/USPS fixtures (2 steps).
    from configs import dann_digits
    from tljax.train import train_and_evaluate

    c = dann_digits.get_config(f"source=mnist,target=usps,data_dir={digits_dir},steps=2")
    c.data.batch_size = 4
    c.train.eval_batch_size = 4
    c.train.progress = False
    c.train.tensorboard = False
    res = train_and_evaluate(c, tmp_path / "run")
    assert res["task"] == "mnist->usps" and res["steps"] == 2
    assert res["evaluated_on"] == {"source": "mnist/test", "target": "usps/test"}

"""load_domain: the name table, TFDS-native datasets (mock_data and TF-free preparation),
argument checks, and the error for a dataset that is not prepared."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tljax.data.benchmarks import (
    BENCHMARKS,
    DatasetNotFoundError,
    get_benchmark,
    known_names,
    load_domain,
    prepare_domain,
)
from tljax.data.benchmarks.__main__ import main


def test_table_covers_the_eight_benchmarks_and_their_domains():
    names = set(known_names())
    expected = {
        "mnist", "usps", "svhn", "mnist_m", "fashion_mnist",
        "office31/amazon", "office31/dslr", "office31/webcam",
        "office_home/art", "office_home/clipart", "office_home/product",
        "office_home/real_world", "visda2017/synthetic", "visda2017/real",
        "domainnet/clipart", "domainnet/infograph", "domainnet/painting",
        "domainnet/quickdraw", "domainnet/real", "domainnet/sketch",
    }  # fmt: skip
    assert names == expected
    classes = {"office31": 31, "office_home": 65, "visda2017": 12, "domainnet": 345}
    for name in names:
        assert BENCHMARKS[name].num_classes == classes.get(name.split("/")[0], 10)
    assert get_benchmark("svhn").tfds_id == "svhn_cropped"
    assert get_benchmark("domainnet/real").tfds_id == "tljax_domainnet/real"
    office = get_benchmark("office31/dslr")
    assert office.train_split == office.test_split == "train"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"Unknown benchmark 'office31/amazn'.*'office31/amazon'"):
        load_domain("office31/amazn")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"image_size": 0}, "image_size"), ({"image_size": (8,)}, "image_size"),
     ({"max_examples": 0}, "max_examples")],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_domain("mnist", **kwargs)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                         ("svhn", (32, 32, 3))])  # fmt: skip
def test_tfds_native_names_with_mock_data(tmp_path, name, shape):
    with tfds.testing.mock_data(num_examples=6):
        domain = load_domain(name, data_dir=tmp_path)
        small = load_domain(name, data_dir=tmp_path, image_size=20, grayscale_to_rgb=True,
                            max_examples=4)  # fmt: skip
    assert domain.name == name
    for split in (domain.train, domain.test):
        assert split.x.shape == (6, *shape) and split.x.dtype == np.float32
        assert split.y.dtype == np.int32 and 0 <= split.y.min() and split.y.max() < 10
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0 and split.x.max() > 0.5
    assert small.train.x.shape == (4, 20, 20, 3) and small.test.x.shape == (4, 20, 20, 3)


def test_missing_dataset_error_says_what_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_domain("office31/amazon", data_dir=tmp_path)
    message = str(info.value)
    for expected in (
        "'office31/amazon' is not prepared",
        f"data_dir '{tmp_path}'",
        str(tmp_path / "office31" / "amazon" / "1.0.0"),
        "domain_adaptation_images.tar.gz",  # what to fetch
        "amazon/images/<class>/*.jpg",  # where to put it
        "python -m tljax.data.benchmarks prepare office31/amazon",
        "manual_dir",
        "download_and_prepare",
    ):
        assert expected in message, expected
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("name, hint", [("usps", "usps.bz2"), ("mnist", "TfFreeMnist"),
                                        ("visda2017/real", "validation.tar"),
                                        ("domainnet/quickdraw", "quickdraw.zip")])  # fmt: skip
def test_missing_dataset_error_names_the_source(tmp_path, name, hint):
    with pytest.raises(DatasetNotFoundError, match="is not prepared") as info:
        load_domain(name, data_dir=tmp_path)
    assert hint in str(info.value)


def test_cli_lists_names(capsys):
    main(["list"])
    out = capsys.readouterr().out
    assert "office_home/real_world" in out and "tljax_domainnet/sketch" in out


# ------------------------------------------- TFDS-native datasets prepared TF-free


def write_idx(folder: Path, n_train: int = 5, n_test: int = 3) -> None:
    """MNIST IDX files where image i is filled with 20 * i and has label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.repeat(np.arange(n, dtype=np.uint8) * 20, 28 * 28).reshape(n, 28, 28)
        header = np.array([2051, n, 28, 28], dtype=">u4").tobytes()
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + images.tobytes())
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(  # uncompressed works too
            np.array([2049, n], dtype=">u4").tobytes() + labels.tobytes()
        )


def test_mnist_prepared_tf_free_is_read_by_tfds_own_builder(tmp_path):
    write_idx(tmp_path / "manual")
    path = prepare_domain("mnist", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert path == tmp_path / "data" / "mnist" / "3.0.1"  # TFDS's own name and version
    assert len(tfds.data_source("mnist", split="test", data_dir=tmp_path / "data")) == 3
    domain = load_domain("mnist", data_dir=tmp_path / "data")
    assert domain.train.x.shape == (5, 28, 28, 1) and domain.test.x.shape == (3, 28, 28, 1)
    values = np.round(domain.train.x[:, 0, 0, 0] * 255).astype(int)
    np.testing.assert_array_equal(domain.train.y, (values // 20) % 10)
    assert sorted(values.tolist()) == [0, 20, 40, 60, 80]


def test_svhn_prepared_tf_free_maps_label_10_to_0(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    manual = tmp_path / "manual"
    manual.mkdir()
    for name, n in (("train", 4), ("test", 2), ("extra", 1)):
        x = np.zeros((32, 32, 3, n), dtype=np.uint8)
        x[..., 0, :] = np.arange(n, dtype=np.uint8) * 50  # red channel encodes the index
        y = (np.arange(n) % 2 * 9 + 1).reshape(n, 1)  # labels 1 and 10 (digit 0)
        scipy_io.savemat(manual / f"{name}_32x32.mat", {"X": x, "y": y})
    prepare_domain("svhn", data_dir=tmp_path / "data", manual_dir=manual)
    domain = load_domain("svhn", data_dir=tmp_path / "data")
    assert domain.train.x.shape == (4, 32, 32, 3) and domain.test.x.shape == (2, 32, 32, 3)
    index = np.round(domain.train.x[:, 0, 0, 0] * 255).astype(int) // 50
    np.testing.assert_array_equal(domain.train.y, np.where(index % 2 == 1, 0, 1))

"""Tests of the IDX reader/writer and the MNIST-format loaders on hand-made fixtures."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tljax.data import idx


def _idx_bytes(code: int, shape: tuple, payload: bytes) -> bytes:
    """An IDX file built by hand from the format's definition."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def _write_dataset(directory: Path, n_train=12, n_test=6, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        for kind, arr, code in (("images-idx3", images, 0x08), ("labels-idx1", labels, 0x08)):
            raw = _idx_bytes(code, arr.shape, arr.tobytes())
            name = f"{split}-{kind}-ubyte"
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
            else:
                (directory / name).write_bytes(raw)
        data[split] = (images, labels)
    return data


def test_read_hand_made_files(tmp_path):
    u8 = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(0x08, u8.shape, u8.tobytes()))
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a"), u8)
    i32 = np.array([1, -70000, 2**31 - 1], np.int32)  # big-endian on disk
    raw = _idx_bytes(0x0C, (3,), struct.pack(">3i", *i32.tolist()))
    (tmp_path / "b.gz").write_bytes(gzip.compress(raw, mtime=0))
    out = idx.read_idx(tmp_path / "b.gz")
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, i32)
    f8 = _idx_bytes(0x0E, (2,), struct.pack(">2d", 0.5, -3.25))
    (tmp_path / "c").write_bytes(f8)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "c"), [0.5, -3.25])


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_write_read_round_trip(tmp_path, dtype, name):
    arr = (np.arange(60).reshape(3, 4, 5) * 3 - 50).astype(dtype)
    idx.write_idx(tmp_path / name, arr)
    out = idx.read_idx(tmp_path / name)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith("gz") else b"\0\0")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\0\0", "shorter than the 4-byte magic"),
        (b"\x01\x00\x08\x01" + b"\0" * 8, "two zero bytes"),
        (b"\0\0\x07\x01" + b"\0" * 8, "unknown IDX data type code 0x07"),
        (b"\0\0\x08\x00", "0 dimensions"),
        (b"\0\0\x08\x03\0\0\0\x02", "truncated IDX header"),
        (_idx_bytes(0x08, (2, 3), bytes(5)), "truncated.*needs 6 bytes.*found 5"),
        (_idx_bytes(0x08, (2, 3), bytes(7)), "trailing bytes"),
        # mtime=0: gzip's header holds the time, and parameter ids made from the bytes
        # must be the same in every pytest-xdist worker's collection.
        (
            gzip.compress(_idx_bytes(0x08, (2, 3), bytes(6)), mtime=0)[:-10],
            "corrupt or truncated gzip",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{len(v)}B",  # not the bytes themselves
)
def test_corrupt_files_raise_clear_errors(tmp_path, content, match):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        idx.read_idx(tmp_path / "bad")


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="no IDX code"):
        idx.write_idx(tmp_path / "x", np.zeros(3, np.uint16))


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_from_fixture_directory(tmp_path, gz):
    data = _write_dataset(tmp_path, gz=gz)
    train, test = idx.load_fashion_mnist(tmp_path)
    assert train.x.shape == (12, 28, 28, 1) and test.x.shape == (6, 28, 28, 1)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int32
    np.testing.assert_array_equal(train.x[..., 0], data["train"][0] / np.float32(255))
    np.testing.assert_array_equal(test.y, data["t10k"][1])
    # The same reader loads MNIST's files from any directory.
    np.testing.assert_array_equal(idx.load_mnist(tmp_path)[0].x, train.x)


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        idx.load_fashion_mnist(tmp_path)
    assert str(tmp_path) in str(err.value) and "t10k-labels-idx1-ubyte" in str(err.value)
    _write_dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"Missing t10k-images-idx3-ubyte\[\.gz\] in"):
        idx.load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="cvdf-datasets/mnist"):
        idx.load_mnist(tmp_path)


def test_mismatched_labels_raise(tmp_path):
    _write_dataset(tmp_path)
    idx.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="expected 12 labels"):
        idx.load_fashion_mnist(tmp_path)


@pytest.mark.skipif(
    not Path(idx.FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz").exists(),
    reason="dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_test_labels():
    labels = idx.read_idx(Path(idx.FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)

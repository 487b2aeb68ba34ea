"""IDX files (the MNIST / Fashion-MNIST format) and the datasets stored in them.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the data type code, ``DD``
the number of dimensions), ``DD`` big-endian uint32 dimension sizes, then the data in
big-endian C order. Files may be gzip-compressed (detected from their content).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from tljax.data.core import Split

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = ", ".join(f"0x{c:02X} ({d.name})" for c, d in _DTYPES.items())
_FILES = tuple(
    f"{split}-{kind}-ubyte"
    for split in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or not.

    Args:
      path: the file.

    Returns:
      The array, in native byte order, with the file's dtype and shape.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if the file is not valid IDX: bad gzip stream, bad magic number, unknown
        data type, or a header or data size that does not match the dimensions.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(
                f"{path}: corrupt or truncated gzip data ({err}); download the file again."
            ) from err
    if len(raw) < 4:
        raise ValueError(
            f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number."
        )
    if raw[:2] != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{raw[:4].hex()} must start with two zero "
            "bytes (e.g. 0x00000803 for uint8 images, 0x00000801 for uint8 labels)."
        )
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02X}; valid: {_CODES}.")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; at least 1 is needed.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(raw)}."
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[code]
    expected, found = math.prod(dims) * dtype.itemsize, len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX data {problem}: shape {dims} of {dtype.name} needs {expected} bytes "
            f"after the {header}-byte header, found {found}."
        )
    data = np.frombuffer(raw, dtype, count=math.prod(dims), offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes an array as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    Args:
      path: the file to write.
      array: an array of at least one dimension, of dtype uint8, int8, int16, int32,
        float32 or float64.

    Raises:
      ValueError: for a 0-d array, more than 255 dimensions, or an unsupported dtype.
    """
    array = np.asarray(array)
    codes = {d.newbyteorder("=").str: c for c, d in _DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX code; valid: {_CODES}.")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: arrays need 1..255 dimensions, got shape {array.shape}.")
    payload = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, _DTYPES[code]).tobytes()
    )
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    Path(path).write_bytes(payload)


def load_idx_dataset(directory: str | os.PathLike, *, how_to_get: str) -> tuple[Split, Split]:
    """Loads an MNIST-format dataset: the four standard IDX files in ``directory``.

    The files are ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, each optionally
    ending in ``.gz`` (the compressed one is preferred).

    Args:
      directory: the folder holding the files.
      how_to_get: instructions appended to the error when files are missing; ``{dir}``
        in it is replaced by the directory.

    Returns:
      ``(train, test)``: images float32 ``(n, h, w, 1)`` in ``[0, 1]``, labels int32.

    Raises:
      FileNotFoundError: if any of the four files is missing, naming them and saying how
        to get them.
      ValueError: if a file is corrupt, or images and labels do not match.
    """
    directory = Path(directory)
    paths, missing = {}, []
    for name in _FILES:
        found = [directory / f"{name}{ext}" for ext in (".gz", "")]
        found = [p for p in found if p.is_file()]
        if found:
            paths[name] = found[0]
        else:
            missing.append(f"{name}[.gz]")
    if missing:
        raise FileNotFoundError(
            f"Missing {', '.join(missing)} in {directory}. {how_to_get.format(dir=directory)}"
        )
    splits = []
    for split in ("train", "t10k"):
        img_path, lbl_path = (
            paths[f"{split}-images-idx3-ubyte"],
            paths[f"{split}-labels-idx1-ubyte"],
        )
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{img_path}: expected uint8 images of shape (n, h, w), got {images.dtype} "
                f"{images.shape}."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{lbl_path}: expected {len(images)} labels (one per image in {img_path.name}), "
                f"got shape {labels.shape}."
            )
        x = images[..., None].astype(np.float32) / np.float32(255.0)
        splits.append(Split(x, labels.astype(np.int32)))
    return splits[0], splits[1]


def load_fashion_mnist(directory: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """Loads Fashion-MNIST (60,000 train and 10,000 test 28x28 images, 10 classes).

    Args:
      directory: folder with the four IDX files; defaults to :data:`FASHION_MNIST_DIR`,
        where the Debian package ``dataset-fashion-mnist`` installs them.

    Returns:
      ``(train, test)``: images float32 ``(n, 28, 28, 1)`` in ``[0, 1]``, labels int32.

    Raises:
      FileNotFoundError: if files are missing; the message says how to install them.
      ValueError: if a file is corrupt.
    """
    how = (
        "Fashion-MNIST was not found. Install it with `apt-get install dataset-fashion-mnist` "
        f"(Debian/Ubuntu, after `apt-get update`; installs into {FASHION_MNIST_DIR}), or "
        "download the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from {FASHION_MNIST_URL} "
        "(https://github.com/zalandoresearch/fashion-mnist) into {dir}."
    )
    return load_idx_dataset(FASHION_MNIST_DIR if directory is None else directory, how_to_get=how)


def load_mnist(directory: str | os.PathLike) -> tuple[Split, Split]:
    """Loads MNIST (60,000 train and 10,000 test 28x28 digits) from its IDX files.

    Args:
      directory: folder with the four IDX files.

    Returns:
      ``(train, test)``: images float32 ``(n, 28, 28, 1)`` in ``[0, 1]``, labels int32.

    Raises:
      FileNotFoundError: if files are missing; the message says where to get them.
      ValueError: if a file is corrupt.
    """
    how = (
        "Download the four MNIST IDX files train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"from {MNIST_URL} (mirror of http://yann.lecun.com/exdb/mnist/) into {{dir}}."
    )
    return load_idx_dataset(directory, how_to_get=how)

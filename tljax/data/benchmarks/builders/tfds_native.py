"""TF-free preparation of the digit datasets TFDS already has: mnist, fashion_mnist, svhn_cropped.

TFDS's own builders for these *read* fine without TensorFlow once prepared in
``array_record`` format, but *preparing* them needs TensorFlow: they open files with
``tf.io.gfile``, extract ``.gz`` files with a TF-based extractor, and hand numpy arrays to
``tfds.features.Image``, which encodes PNG with ``tf.image.encode_png``. These subclasses
keep TFDS's name, version and features (so the prepared data is what ``tfds.builder('mnist')``
and ``tfds.data_source('mnist')`` expect) and only replace file reading and image encoding
with NumPy/PIL. They are not registered with TFDS (the names belong to TFDS's builders).

They also accept the source files in ``manual_dir`` (e.g. Debian's ``dataset-fashion-mnist``
package installs the Fashion-MNIST IDX files in ``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import gzip
import urllib.parse
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.datasets.svhn_cropped import svhn_cropped_dataset_builder as _svhn
from tensorflow_datasets.image_classification import mnist as _mnist

from tljax.data.benchmarks.builders._common import fetch_file

_IDX_FILES = {
    "train_data": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_data": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        return f.read()


def read_idx_images(path: Path) -> np.ndarray:
    """Reads an IDX3 image file (gzipped or not) into a ``(n, rows, cols)`` uint8 array."""
    data = _read_maybe_gzip(path)
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">u4")
    if magic != 2051:
        raise ValueError(f"{path} is not an IDX3 image file (magic {magic}, expected 2051).")
    return np.frombuffer(data[16:], dtype=np.uint8, count=n * rows * cols).reshape(n, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """Reads an IDX1 label file (gzipped or not) into an ``(n,)`` uint8 array."""
    data = _read_maybe_gzip(path)
    magic, n = np.frombuffer(data[:8], dtype=">u4")
    if magic != 2049:
        raise ValueError(f"{path} is not an IDX1 label file (magic {magic}, expected 2049).")
    return np.frombuffer(data[8:], dtype=np.uint8, count=n)


class _TfFreeIdxMixin:
    """Replaces MNIST-style split generation with NumPy/PIL code."""

    URL: str

    def _split_generators(self, dl_manager):
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        paths = {
            key: fetch_file(
                dl_manager,
                url=urllib.parse.urljoin(self.URL, name),
                manual_names=(name, name[: -len(".gz")]),
                instructions=instructions,
            )
            for key, name in _IDX_FILES.items()
        }
        return {
            split: self._generate_examples(
                data_path=paths[f"{split}_data"], label_path=paths[f"{split}_labels"]
            )
            for split in ("train", "test")
        }

    def _generate_examples(self, data_path, label_path, num_examples=None):
        images = read_idx_images(data_path)
        labels = read_idx_labels(label_path)
        if len(images) != len(labels):
            raise ValueError(
                f"{data_path} has {len(images)} images but {label_path} has {len(labels)} labels."
            )
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": Image.fromarray(image), "label": int(label)}


class TfFreeMnist(_TfFreeIdxMixin, _mnist.MNIST, skip_registration=True):
    """TFDS ``mnist`` (same name, version and features), prepared without TensorFlow."""

    name = "mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: put the four MNIST IDX files ({", ".join(_IDX_FILES.values())}, gzipped or
    not) directly in manual_dir; otherwise they are downloaded from {_mnist._MNIST_URL}.
    """


class TfFreeFashionMnist(_TfFreeIdxMixin, _mnist.FashionMNIST, skip_registration=True):
    """TFDS ``fashion_mnist`` (same name, version and features), prepared without TensorFlow."""

    name = "fashion_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: put the four Fashion-MNIST IDX files ({", ".join(_IDX_FILES.values())}) directly
    in manual_dir (Debian's `dataset-fashion-mnist` package has them in
    /usr/share/datasets/fashion-mnist); otherwise they are downloaded from
    {_mnist.FashionMNIST.URL}.
    """


class TfFreeSvhnCropped(_svhn.Builder, skip_registration=True):
    """TFDS ``svhn_cropped`` (same name, version, features and splits), prepared without TF."""

    name = "svhn_cropped"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: put train_32x32.mat, test_32x32.mat and extra_32x32.mat directly in
    manual_dir; otherwise they are downloaded from {_svhn.URL}.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        # Same features as TFDS's builder; `dataset_info_from_configs` only works for
        # builders that live in TFDS's own package.
        return tfds.core.DatasetInfo(
            builder=self,
            description="The Street View House Numbers (SVHN) Dataset, cropped to 32x32.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                    "id": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=_svhn.URL,
        )

    def _split_generators(self, dl_manager):
        splits = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
        return {
            split: self._generate_examples(
                split_prefix=f"{split}_",
                filepath=fetch_file(
                    dl_manager,
                    url=urllib.parse.urljoin(_svhn.URL, name),
                    manual_names=(name,),
                    instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
                ),
            )
            for split, name in splits.items()
        }

    def _generate_examples(self, split_prefix, filepath):
        import scipy.io  # only needed here; scipy comes with scikit-learn

        data = scipy.io.loadmat(filepath)
        labels = data["y"].reshape(-1)
        if labels.min() < 1 or labels.max() > 10:
            raise ValueError(f"{filepath}: SVHN labels must lie in 1..10, got {labels.min()}..")
        images = np.moveaxis(data["X"], -1, 0)  # (32, 32, 3, n) -> (n, 32, 32, 3)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield (
                i,
                {
                    "image": Image.fromarray(np.ascontiguousarray(image)),
                    "label": int(label) % 10,  # the .mat files store digit 0 as 10
                    "id": f"{split_prefix}{i:06d}",
                },
            )

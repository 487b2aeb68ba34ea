"""TF-free TFDS builders for the digit datasets TFDS lacks: USPS and MNIST-M.

Both store ``image`` as ``tfds.features.Image`` with PNG encoding, fed PIL images (PIL
does the encoding, so no TensorFlow is needed; TFDS decodes them with PIL on read).
"""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from tljax.data.benchmarks.builders._common import (
    extract,
    fetch_file,
    find_dir,
    find_file,
    manual_dir_or_none,
    rgb_image_bytes,
)

_DIGITS = tuple(str(d) for d in range(10))

# LIBSVM's copy of USPS (Hull 1994): the file torchvision, TLlib and most DA code use.
USPS_URLS = {
    "train": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.bz2",
    "test": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2",
}
# Published MD5 checksums of the two files (as checked by torchvision.datasets.USPS).
USPS_MD5 = {
    "train": "ec16c51db3855ca6c91edd34d0e9b197",
    "test": "8ea070ee2aca1ac39742fdd1ef5ed118",
}
USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}


def parse_usps_libsvm(text: str, source: str = "usps") -> tuple[np.ndarray, np.ndarray]:
    """Parses USPS in LIBSVM format into images and labels.

    Each line is ``label index:value ...`` with ``label`` in 1..10 (1 is the digit 0) and
    256 values in [-1, 1] (missing indices are 0, as LIBSVM's sparse format says).
    Pixels are mapped to uint8 as ``uint8((v + 1) / 2 * 255)`` and labels to ``label - 1``,
    exactly as torchvision's ``USPS`` (and hence TLlib) does.

    Args:
      text: the decompressed file content.
      source: file name for error messages.

    Returns:
      ``(images, labels)``: uint8 ``(n, 16, 16)`` and int64 ``(n,)`` in 0..9.

    Raises:
      ValueError: on a malformed line, a feature index outside 1..256 or a bad label.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    images = np.zeros((len(lines), 256), dtype=np.float32)
    labels = np.zeros(len(lines), dtype=np.int64)
    for row, line in enumerate(lines):
        fields = line.split()
        try:
            labels[row] = int(float(fields[0])) - 1
            for field in fields[1:]:
                index, value = field.split(":")
                images[row, int(index) - 1] = float(value)
        except (ValueError, IndexError) as e:
            raise ValueError(
                f"{source}, line {row + 1}: not LIBSVM 'label index:value ...' with "
                f"indices 1..256: {line[:80]!r}"
            ) from e
        if not 0 <= labels[row] <= 9:
            raise ValueError(f"{source}, line {row + 1}: label {fields[0]} is not in 1..10.")
    pixels = ((np.clip(images, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(np.uint8)
    return pixels.reshape(-1, 16, 16), labels


class Usps(tfds.core.GeneratorBasedBuilder):
    """USPS handwritten digits, 16x16 grayscale: 7,291 train and 2,007 test images."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (LIBSVM copy of USPS)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional (the files are downloaded otherwise). Put the LIBSVM USPS files directly in
    manual_dir, compressed or not: {USPS_FILES["train"]} (or usps) and {USPS_FILES["test"]}
    (or usps.t), from {USPS_URLS["train"]} and {USPS_URLS["test"]}.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "USPS handwritten digits (Hull 1994), 16x16 grayscale, in the LIBSVM copy "
                "used by torchvision and TLlib. Pixels rescaled from [-1, 1] to 0..255."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(16, 16, 1), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=_DIGITS),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps",
        )

    def _split_generators(self, dl_manager):
        paths = {
            split: fetch_file(
                dl_manager,
                url=USPS_URLS[split],
                manual_names=(name, name[: -len(".bz2")]),
                md5=USPS_MD5[split],
                instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
            for split, name in USPS_FILES.items()
        }
        return {split: self._generate_examples(path) for split, path in paths.items()}

    def _generate_examples(self, path: Path):
        raw = path.read_bytes()
        if raw[:3] == b"BZh":
            raw = bz2.decompress(raw)
        images, labels = parse_usps_libsvm(raw.decode("ascii"), source=str(path))
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": Image.fromarray(image), "label": int(label)}


# Unpacked MNIST-M of Ganin et al. (2016), as mirrored by pytorch-adapt. The original
# is on Google Drive (see MANUAL_DOWNLOAD_INSTRUCTIONS), which plain HTTP cannot fetch.
MNIST_M_URL = "https://cornell.box.com/shared/static/jado7quprg6hzzdubvwzh9umr75damwi"
MNIST_M_MD5 = "859df31c91afe82e80e5012ba928f279"


class MnistM(tfds.core.GeneratorBasedBuilder):
    """MNIST-M (Ganin et al. 2016): MNIST digits blended with BSDS500 patches, 28x28 RGB."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (Ganin's unpacked PNG version)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional (the archive is downloaded from {MNIST_M_URL} otherwise). Put the original
    `mnist_m.tar.gz` (Ganin et al., http://yaroslav.ganin.net/, Google Drive
    https://drive.google.com/file/d/0B_tExHiYS-0veklUZHFYT19KYjg) directly in manual_dir,
    or its extracted folder `mnist_m/` holding mnist_m_train/, mnist_m_test/,
    mnist_m_train_labels.txt and mnist_m_test_labels.txt.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "MNIST-M: MNIST digits blended with random color patches of BSDS500 photos, "
                "28x28 RGB; 59,001 train and 9,001 test images (Ganin et al. 2016)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=_DIGITS),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://yaroslav.ganin.net/",
            citation="Ganin et al., Domain-Adversarial Training of Neural Networks, JMLR 2016.",
        )

    def _split_generators(self, dl_manager):
        manual = manual_dir_or_none(dl_manager)
        root = None
        if manual is not None:
            # The extracted folder: `mnist_m/` somewhere in manual_dir, or manual_dir itself.
            root = find_dir([manual], ["mnist_m"])
            if find_file([manual], "mnist_m_train_labels.txt", max_depth=0):
                root = manual
        if root is None or find_file([root], "mnist_m_train_labels.txt", 1) is None:
            archive = fetch_file(
                dl_manager,
                url=MNIST_M_URL,
                manual_names=("mnist_m.tar.gz", "mnist_m.tgz"),
                md5=MNIST_M_MD5,
                instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
            extracted = extract(archive, Path(dl_manager.download_dir) / "extracted")
            root = find_dir([extracted], ["mnist_m"]) or extracted
        labels_file = {
            s: find_file([root], f"mnist_m_{s}_labels.txt", 1) for s in ("train", "test")
        }
        if None in labels_file.values():
            raise FileNotFoundError(
                f"mnist_m_train_labels.txt / mnist_m_test_labels.txt not found under {root}.\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return {
            split: self._generate_examples(path, path.parent / f"mnist_m_{split}")
            for split, path in labels_file.items()
        }

    def _generate_examples(self, labels_file: Path, image_dir: Path):
        for line in labels_file.read_text().splitlines():
            if not line.strip():
                continue
            name, label = line.split()
            yield (
                name,
                {
                    "image": rgb_image_bytes(image_dir / name, ("PNG",), "PNG"),
                    "label": int(label),
                },
            )

"""TF-free TFDS builder for VisDA-2017 classification (synthetic -> real).

Splits: ``train`` = the 152,397 synthetic renderings (PNG), ``validation`` = the 55,388
real MS-COCO crops (JPEG): the standard Syn->Real task trains on ``train`` and adapts to
and reports on ``validation``. The unlabeled ``test`` split (YouTube-BB) is not built.
Images are stored in their original format (``encoding_format=None``).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from tljax.data.benchmarks.builders._common import scan_class_folders
from tljax.data.benchmarks.builders._photos import PhotoBuilder

# Official class order: the label indices of the challenge's image_list.txt files.
VISDA2017_CLASSES = (
    "aeroplane", "bicycle", "bus", "car", "horse", "knife",
    "motorcycle", "person", "plant", "skateboard", "train", "truck",
)  # fmt: skip

_URL = "http://csr.bu.edu/ftp/visda17/clf/{}.tar"


class Visda2017(PhotoBuilder):
    """VisDA-2017 classification: 12 classes, synthetic (train) and real (validation)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = VISDA2017_CLASSES
    ENCODING_FORMAT = None  # synthetic images are PNG, real ones JPEG: both kept as they are
    KEEP_FORMATS = ("JPEG", "PNG")
    FALLBACK_FORMAT = "PNG"
    DESCRIPTION = "VisDA-2017 classification: synthetic renderings (train) and real (validation)."
    HOMEPAGE = "https://ai.bu.edu/visda-2017/"
    CITATION = "Peng et al., VisDA: The Visual Domain Adaptation Challenge, arXiv:1710.06924."
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional (downloaded from {_URL.format("train")} (~12 GB) and
    {_URL.format("validation")} otherwise; see
    https://github.com/VisionLearningGroup/taskcv-2017-public/tree/master/classification).
    Put in manual_dir either the extracted folders `train/<class>/*.png` and
    `validation/<class>/*.jpg`, or the archives `train.tar` and `validation.tar` as they are.
    """

    def _split_generators(self, dl_manager):
        splits = {}
        for split in ("train", "validation"):
            folder = self._locate(
                dl_manager,
                folder_names=(split,),
                archive_names=(f"{split}.tar",),
                url=_URL.format(split),
                md5=None,
                accept=lambda d: d if self._has_classes(d) else None,
            )
            items = scan_class_folders(folder, self.CLASS_NAMES, self.IMAGE_EXTENSIONS)
            splits[split] = self._generate_examples(items, relative_to=folder.parent)
        return splits

"""TF-free TFDS builders for Office-31 and Office-Home (one builder config per domain).

Neither dataset has an official train/test split: each domain is one ``train`` split
holding every image (the loader uses it as both train and test, as TLlib does).
Labels follow the class-folder names in sorted order (torchvision ``ImageFolder`` order;
for Office-31 this is also TLlib's order, for Office-Home TLlib uses its own order).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from tljax.data.benchmarks.builders._common import scan_class_folders
from tljax.data.benchmarks.builders._photos import DomainConfig, PhotoBuilder

OFFICE31_CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair",
    "desk_lamp", "desktop_computer", "file_cabinet", "headphones", "keyboard",
    "laptop_computer", "letter_tray", "mobile_phone", "monitor", "mouse", "mug",
    "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder",
    "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
)  # fmt: skip

OFFICE_HOME_CLASSES = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator",
    "Calendar", "Candles", "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp",
    "Drill", "Eraser", "Exit_Sign", "Fan", "File_Cabinet", "Flipflops", "Flowers", "Folder",
    "Fork", "Glasses", "Hammer", "Helmet", "Kettle", "Keyboard", "Knives", "Lamp_Shade",
    "Laptop", "Marker", "Monitor", "Mop", "Mouse", "Mug", "Notebook", "Oven", "Pan",
    "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin", "Radio",
    "Refrigerator", "Ruler", "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda",
    "Speaker", "Spoon", "TV", "Table", "Telephone", "ToothBrush", "Toys", "Trash_Can", "Webcam",
)  # fmt: skip

# Per-domain archives hosted for TLlib (thuml/Transfer-Learning-Library,
# tllib/vision/datasets/office31.py and officehome.py). No published checksums.
_TLLIB = "https://cloud.tsinghua.edu.cn/f/{}/?dl=1"


class Office31(PhotoBuilder):
    """Office-31 (Saenko et al. 2010): 4,110 images of 31 office objects in 3 domains."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = OFFICE31_CLASSES
    BUILDER_CONFIGS = [
        DomainConfig(
            name=name,
            description=f"Office-31 {name} ({count} images).",
            folder_names=(name,),
            archive_names=(f"{name}.tgz", f"{name}.tar.gz", "domain_adaptation_images.tar.gz"),
            url=_TLLIB.format(key),
        )
        for name, count, key in (
            ("amazon", 2817, "ec12dfcddade43ab8101"),
            ("dslr", 498, "a41d818ae2f34da7bb32"),
            ("webcam", 795, "8a41009a166e4131adcd"),
        )
    ]
    DESCRIPTION = "Office-31: amazon (product photos), dslr and webcam, 31 classes."
    HOMEPAGE = "https://faculty.cc.gatech.edu/~judy/domainadapt/"
    CITATION = "Saenko et al., Adapting Visual Category Models to New Domains, ECCV 2010."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Optional (each domain is downloaded from TLlib's mirror otherwise). Put in manual_dir
    either the extracted domain folders `amazon/images/<class>/*.jpg`, `dslr/images/...`,
    `webcam/images/...` (e.g. from the original `domain_adaptation_images.tar.gz`, Saenko et
    al., https://faculty.cc.gatech.edu/~judy/domainadapt/; any nesting up to 3 levels deep
    is found), or the archives `amazon.tgz`, `dslr.tgz`, `webcam.tgz` (TLlib) or
    `domain_adaptation_images.tar.gz` as they are.
    """

    def _split_generators(self, dl_manager):
        config = self.builder_config
        folder = self._locate(
            dl_manager,
            folder_names=config.folder_names,
            archive_names=config.archive_names,
            url=config.url,
            md5=config.md5,
            accept=self._images_folder,
        )
        items = scan_class_folders(folder, self.CLASS_NAMES, self.IMAGE_EXTENSIONS)
        return {"train": self._generate_examples(items, relative_to=folder.parent.parent)}

    def _images_folder(self, domain_dir: Path) -> Path | None:
        for candidate in (domain_dir / "images", domain_dir):
            if candidate.is_dir() and self._has_classes(candidate):
                return candidate
        return None


class OfficeHome(PhotoBuilder):
    """Office-Home (Venkateswara et al. 2017): 15,588 images of 65 classes in 4 domains."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = OFFICE_HOME_CLASSES
    BUILDER_CONFIGS = [
        DomainConfig(
            name=name,
            description=f"Office-Home {folder} ({count} images).",
            folder_names=(folder, folder.replace("_", " ")),
            archive_names=(f"{folder}.tgz", f"{folder}.tar.gz", "OfficeHomeDataset_10072016.zip"),
            url=_TLLIB.format(key),
        )
        for name, folder, count, key in (
            ("art", "Art", 2427, "4691878067d04755beab"),
            ("clipart", "Clipart", 4365, "0d41e7da4558408ea5aa"),
            ("product", "Product", 4439, "76186deacd7c4fa0a679"),
            ("real_world", "Real_World", 4357, "dee961894cc64b1da1d7"),
        )
    ]
    DESCRIPTION = "Office-Home: Art, Clipart, Product and Real_World, 65 classes."
    HOMEPAGE = "https://www.hemanthdv.org/officeHomeDataset.html"
    CITATION = "Venkateswara et al., Deep Hashing Network for UDA, CVPR 2017."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Optional (each domain is downloaded from TLlib's mirror otherwise). Put in manual_dir
    either the extracted domain folders `Art/<class>/*.jpg`, `Clipart/...`, `Product/...`,
    `Real_World/...` (or `Real World/...`, as in the official
    `OfficeHomeDataset_10072016.zip` from https://www.hemanthdv.org/officeHomeDataset.html;
    any nesting up to 3 levels deep is found), or the archives `Art.tgz`, `Clipart.tgz`,
    `Product.tgz`, `Real_World.tgz` (TLlib) or `OfficeHomeDataset_10072016.zip` as they are.
    """

    def _split_generators(self, dl_manager):
        config = self.builder_config
        folder = self._locate(
            dl_manager,
            folder_names=config.folder_names,
            archive_names=config.archive_names,
            url=config.url,
            md5=config.md5,
            accept=lambda d: d if self._has_classes(d) else None,
        )
        items = scan_class_folders(folder, self.CLASS_NAMES, self.IMAGE_EXTENSIONS)
        return {"train": self._generate_examples(items, relative_to=folder.parent)}

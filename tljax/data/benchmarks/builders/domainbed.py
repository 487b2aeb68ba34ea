"""TF-free TFDS builders for DomainBed's photo benchmarks PACS, VLCS and TerraIncognita.

One builder config per domain; each domain is one ``train`` split holding every image
(DomainBed splits each domain 80/20 itself, :mod:`tljax.data.dg_photos`). The source is
the folder layout DomainBed's ``domainbed/scripts/download.py`` leaves in its data
directory, ``<root>/<dataset>/<domain>/<class>/*.jpg``, or the archive it downloads:

* PACS (Li et al. 2017): ``PACS.zip`` from
  https://drive.google.com/uc?id=1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd (it holds
  ``kfold/<domain>/<class>/``, which DomainBed renames ``PACS/``);
* VLCS (Fang et al. 2013): ``VLCS.tar.gz`` from
  https://drive.google.com/uc?id=1skwblH1_okBwxWxmRsp9_qi15hyPpxg8 (``VLCS/<domain>/``);
* TerraIncognita (Beery et al. 2018): DomainBed builds ``terra_incognita/location_<L>/``
  from the Caltech Camera Traps images ``eccv_18_all_images_sm.tar.gz`` and the labels
  ``caltech_camera_traps.json.zip`` (https://lilablobssc.blob.core.windows.net/
  caltechcameratraps/); this builder reads either that layout or the two downloads
  themselves (the same selection: locations 38, 43, 46, 100; 10 categories).

Google Drive serves large files only through a confirmation page, so nothing is
downloaded here: put the folder or the archive in ``manual_dir``. Labels are the class
folders in sorted order (torchvision ``ImageFolder``, as DomainBed).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import tensorflow_datasets as tfds

from tljax.data.benchmarks.builders._common import (
    extract,
    find_dir,
    find_file,
    manual_dir_or_none,
    rgb_image_bytes,
    scan_class_folders,
)
from tljax.data.benchmarks.builders._photos import DomainConfig, PhotoBuilder

PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
VLCS_CLASSES = ("bird", "car", "chair", "dog", "person")
TERRA_INCOGNITA_CLASSES = (
    "bird", "bobcat", "cat", "coyote", "dog", "empty", "opossum", "rabbit", "raccoon",
    "squirrel",
)  # fmt: skip
TERRA_LOCATIONS = ("100", "38", "43", "46")  # DomainBed's environment order (sorted names)

_DRIVE = "https://drive.google.com/uc?id={}"
_LILA = "https://lilablobssc.blob.core.windows.net/caltechcameratraps"
TERRA_IMAGES_URL = f"{_LILA}/eccv_18_all_images_sm.tar.gz"
TERRA_LABELS_URL = f"{_LILA}/labels/caltech_camera_traps.json.zip"


class _FolderBenchmark(PhotoBuilder, skip_registration=True):
    """A benchmark whose domains are ``<domain>/<class>/*`` folders in manual_dir."""

    def _split_generators(self, dl_manager):
        config = self.builder_config
        folder = self._locate(
            dl_manager,
            folder_names=config.folder_names,
            archive_names=config.archive_names,
            url=None,
            md5=None,
            accept=lambda d: d if self._has_classes(d) else None,
        )
        items = scan_class_folders(folder, self.CLASS_NAMES, self.IMAGE_EXTENSIONS)
        return {"train": self._generate_examples(items, relative_to=folder.parent)}


class Pacs(_FolderBenchmark):
    """PACS: 9,991 images of 7 classes in 4 styles (photo, art painting, cartoon, sketch)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = PACS_CLASSES
    ENCODING_FORMAT = None  # JPEG and PNG files, both kept as they are
    KEEP_FORMATS = ("JPEG", "PNG")
    FALLBACK_FORMAT = "PNG"
    BUILDER_CONFIGS = [
        DomainConfig(
            name=name,
            description=f"PACS {name} ({count} images).",
            folder_names=(name,),
            archive_names=("PACS.zip", "PACS", "kfold"),
        )
        for name, count in (
            ("art_painting", 2048),
            ("cartoon", 2344),
            ("photo", 1670),
            ("sketch", 3929),
        )
    ]
    DESCRIPTION = "PACS: art_painting, cartoon, photo, sketch; 7 classes."
    HOMEPAGE = "https://domaingeneralization.github.io/"
    CITATION = "Li et al., Deeper, Broader and Artier Domain Generalization, ICCV 2017."
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put in manual_dir DomainBed's folder `PACS/<domain>/<class>/*.jpg` (domains
    art_painting, cartoon, photo, sketch; classes {", ".join(PACS_CLASSES)}), e.g. as made
    by `python -m domainbed.scripts.download --data_dir=manual_dir`, or the archive
    `PACS.zip` that script downloads from {_DRIVE.format("1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd")}
    (it holds `kfold/<domain>/<class>/`; any nesting up to 3 levels deep is found).
    """


class Vlcs(_FolderBenchmark):
    """VLCS: 10,729 images of 5 classes from 4 photo datasets."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = VLCS_CLASSES
    BUILDER_CONFIGS = [
        DomainConfig(
            name=name.lower(),
            description=f"VLCS {name} ({count} images).",
            folder_names=(name,),
            archive_names=("VLCS.tar.gz", "VLCS.tgz", "VLCS"),
        )
        for name, count in (
            ("Caltech101", 1415),
            ("LabelMe", 2656),
            ("SUN09", 3282),
            ("VOC2007", 3376),
        )
    ]
    DESCRIPTION = "VLCS: Caltech101, LabelMe, SUN09, VOC2007; 5 classes."
    HOMEPAGE = "https://github.com/facebookresearch/DomainBed"
    CITATION = (
        "Fang et al., Unbiased Metric Learning: On the Utilization of Multiple Datasets "
        "and Web Images for Softening Bias, ICCV 2013."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put in manual_dir DomainBed's folder `VLCS/<domain>/<class>/*.jpg` (domains Caltech101,
    LabelMe, SUN09, VOC2007; classes {", ".join(VLCS_CLASSES)}), e.g. as made by
    `python -m domainbed.scripts.download --data_dir=manual_dir`, or the archive
    `VLCS.tar.gz` that script downloads from
    {_DRIVE.format("1skwblH1_okBwxWxmRsp9_qi15hyPpxg8")}.
    """


class TerraIncognita(PhotoBuilder):
    """TerraIncognita: camera-trap photos of 10 categories at 4 locations (DomainBed's)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = TERRA_INCOGNITA_CLASSES
    BUILDER_CONFIGS = [
        DomainConfig(
            name=f"location_{loc}",
            description=f"TerraIncognita camera-trap location {loc}.",
            folder_names=(f"location_{loc}",),
        )
        for loc in TERRA_LOCATIONS
    ]
    DESCRIPTION = (
        "TerraIncognita (Caltech Camera Traps, DomainBed's selection): locations 100, 38, "
        "43, 46; 10 categories."
    )
    HOMEPAGE = "https://lila.science/datasets/caltech-camera-traps"
    CITATION = "Beery et al., Recognition in Terra Incognita, ECCV 2018."
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put in manual_dir either DomainBed's folder `terra_incognita/location_<L>/<category>/
    *.jpg` (L in 100, 38, 43, 46; categories {", ".join(TERRA_INCOGNITA_CLASSES)}) as made
    by `python -m domainbed.scripts.download --data_dir=manual_dir`, or the two files that
    script downloads: the images {TERRA_IMAGES_URL} (extracted
    `eccv_18_all_images_sm/` or the .tar.gz as is) and the labels {TERRA_LABELS_URL}
    (`caltech_images_20210113.json` or the .zip as is).
    """

    def _split_generators(self, dl_manager):
        config = self.builder_config
        manual = manual_dir_or_none(dl_manager)
        roots = [manual] if manual is not None else []
        accept = lambda d: d if self._has_classes(d) else None  # noqa: E731
        folder = self._search(roots, config.folder_names, accept)
        if folder is not None:
            items = scan_class_folders(folder, self.CLASS_NAMES, self.IMAGE_EXTENSIONS)
            return {"train": self._generate_examples(items, relative_to=folder.parent)}
        images, labels = self._camera_trap_files(manual, Path(dl_manager.download_dir))
        location = config.name.removeprefix("location_")
        items = camera_trap_items(labels, images, location, self.CLASS_NAMES)
        if not items:
            raise ValueError(
                f"No image of location {location} with one of the categories "
                f"{list(self.CLASS_NAMES)} in {labels}."
            )
        return {"train": self._generate_camera_trap_examples(items, images, config.name)}

    def _generate_camera_trap_examples(self, items, images: Path, domain: str):
        """Examples named as DomainBed's copies: ``location_<L>/<category>/<file>``."""
        for path, label in items:
            rel = f"{domain}/{self.CLASS_NAMES[label]}/{path.relative_to(images).as_posix()}"
            image = rgb_image_bytes(path, self.KEEP_FORMATS, self.FALLBACK_FORMAT)
            yield rel, {"image": image, "label": label, "filename": rel}

    def _camera_trap_files(self, manual: Path | None, download_dir: Path) -> tuple[Path, Path]:
        """The images folder and the labels JSON from manual_dir (extracting archives)."""
        roots = [manual] if manual is not None else []
        images = find_dir(roots, ["eccv_18_all_images_sm"])
        if (
            images is None
            and manual is not None
            and (manual / Path(TERRA_IMAGES_URL).name).is_file()
        ):
            extracted = extract(manual / Path(TERRA_IMAGES_URL).name, download_dir / "extracted")
            images = find_dir([extracted], ["eccv_18_all_images_sm"])
        labels = None
        for name in ("caltech_images_20210113.json", "caltech_bboxes_20200316.json"):
            labels = labels or find_file(roots, name)
        archive = manual / Path(TERRA_LABELS_URL).name if manual is not None else None
        if labels is None and archive is not None and archive.is_file():
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if n.endswith(".json")]
                if names:
                    zf.extract(names[0], download_dir / "extracted")
                    labels = download_dir / "extracted" / names[0]
        if images is None or labels is None:
            missing = [
                what for what, found in (("images", images), ("labels", labels)) if found is None
            ]
            raise FileNotFoundError(
                f"TerraIncognita {self.builder_config.name}: no folder "
                f"{self.builder_config.folder_names[0]}/<category>/ in manual_dir ({manual}), "
                f"and the camera-trap {' and '.join(missing)} are missing too.\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        return images, labels


def camera_trap_items(
    labels_json: Path, images_dir: Path, location: str, classes: tuple[str, ...]
) -> list[tuple[Path, int]]:
    """DomainBed's TerraIncognita selection from the Caltech Camera Traps labels.

    As ``domainbed/scripts/download.py``: every image of ``location`` is filed under the
    category of each of its annotations that is one of ``classes`` (an image with two
    such annotations of different categories appears under both; the same category twice
    counts once).

    Returns:
      ``(path, label)`` pairs, sorted by path, then label.

    Raises:
      FileNotFoundError: if a selected image is not in ``images_dir``.
    """
    data = json.loads(Path(labels_json).read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    index = {name: i for i, name in enumerate(classes)}
    images = {im["id"]: im["file_name"] for im in data["images"] if str(im["location"]) == location}
    found = set()
    for annotation in data["annotations"]:
        file = images.get(annotation["image_id"])
        label = index.get(names.get(annotation["category_id"]))
        if file is not None and label is not None:
            found.add((file, label))
    items = []
    for file, label in sorted(found):
        path = images_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"{labels_json} lists image {file}, not found in {images_dir}.")
        items.append((path, label))
    return items

"""DomainBed's photo benchmarks (PACS, VLCS, TerraIncognita builders) and the photo domain
sets (:mod:`tljax.data.dg_photos`), prepared from tiny fixtures in DomainBed's layouts.

Each test writes a few solid-colour images (PIL) where DomainBed's download script leaves
them (or the archive it downloads), prepares the TFDS builders with ``manual_dir`` pointing
at them and reads the domain set back; the colour of each image says which class folder it
came from. Nothing is downloaded.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tljax.data import dg_photos
from tljax.data.benchmarks import DatasetNotFoundError
from tljax.data.benchmarks.builders.domainbed import (
    PACS_CLASSES,
    TERRA_INCOGNITA_CLASSES,
    VLCS_CLASSES,
    camera_trap_items,
)
from tljax.data.benchmarks.builders.domainnet import DOMAINNET_CLASSES
from tljax.data.benchmarks.builders.office import OFFICE_HOME_CLASSES
from tljax.data.domain_sets import get_domain_set

COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def write_image(path: Path, color, fmt="JPEG", size=(20, 14)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def class_folders(root: Path, classes, per_class=2, ext=".jpg", fmt="JPEG") -> None:
    for k, name in enumerate(classes):
        for j in range(per_class):
            write_image(root / name / f"img_{j}{ext}", COLORS[k % 3], fmt=fmt)


def check_set(ds, names, sizes, image_size, num_classes, colors: dict[int, tuple]) -> None:
    """Names, the 80/20 split of ``sizes`` images per domain, dtypes, and each image's colour
    against its label's class folder colour."""
    ds.validate()
    assert ds.domain_names() == tuple(names) and ds.num_classes == num_classes
    for d, n in zip(ds.domains, sizes, strict=True):
        assert len(d.test) == int(0.2 * n) and len(d.train) + len(d.test) == n
        for split in (d.train, d.test):
            assert split.x.dtype == np.uint8 and split.y.dtype == np.int32
            assert split.x.shape[1:] == (image_size, image_size, 3)
            for x, y in zip(split.x, split.y, strict=True):
                mean = x.reshape(-1, 3).mean(0)
                np.testing.assert_allclose(mean, colors[int(y)], atol=15)  # JPEG


def prepared(name, tmp_path, **kwargs):
    dg_photos.prepare(name, data_dir=tmp_path / "data", manual_dir=tmp_path / "manual", **kwargs)


# ------------------------------------------------------------------------------- PACS


def test_pacs_from_domainbed_folders_with_png_sketches(tmp_path):
    classes = PACS_CLASSES[:3]
    root = tmp_path / "manual" / "PACS"
    for domain in ("art_painting", "cartoon", "photo"):
        class_folders(root / domain, classes)
    class_folders(root / "sketch", classes, ext=".png", fmt="PNG")
    prepared("pacs", tmp_path)
    ds = get_domain_set("pacs", data_seed=1, image_size=12, data_dir=tmp_path / "data")
    names = ("art_painting", "cartoon", "photo", "sketch")
    check_set(ds, names, [6] * 4, 12, 7, dict(enumerate(COLORS)))
    # The seed draws the out split; the labels do not change with it.
    other = dg_photos.pacs(data_seed=2, image_size=12, data_dir=tmp_path / "data")
    for a, b in zip(ds.domains, other.domains, strict=True):
        assert sorted([*a.train.y, *a.test.y]) == sorted([*b.train.y, *b.test.y])
    assert any(not np.array_equal(a.test.x, b.test.x) for a, b in zip(ds.domains, other.domains))


def test_pacs_from_domainbeds_zip_and_domain_subset(tmp_path):
    src = tmp_path / "src" / "kfold"
    class_folders(src / "photo", PACS_CLASSES[-2:], per_class=3)
    class_folders(src / "cartoon", PACS_CLASSES[-2:], per_class=2)
    (tmp_path / "manual").mkdir()
    with zipfile.ZipFile(tmp_path / "manual" / "PACS.zip", "w") as zf:
        for path in sorted(src.rglob("*.jpg")):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    prepared("pacs", tmp_path, domains=["cartoon", "photo"])
    ds = dg_photos.pacs(
        image_size=8, data_dir=tmp_path / "data", domains=("photo", "cartoon"), max_per_domain=5
    )
    check_set(ds, ("cartoon", "photo"), [4, 5], 8, 7, {5: COLORS[0], 6: COLORS[1]})


# ------------------------------------------------------------------------------- VLCS


def test_vlcs_from_domainbeds_tar_gz(tmp_path):
    src = tmp_path / "src" / "VLCS"
    names = ("Caltech101", "LabelMe", "SUN09", "VOC2007")
    for domain in names:
        class_folders(src / domain, VLCS_CLASSES[:3], per_class=2)
    (tmp_path / "manual").mkdir()
    with tarfile.open(tmp_path / "manual" / "VLCS.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="VLCS")
    prepared("vlcs", tmp_path)
    ds = dg_photos.vlcs(image_size=10, data_dir=tmp_path / "data", holdout_fraction=0.5)
    assert [len(d.test) for d in ds.domains] == [3] * 4
    for d in ds.domains:
        for split in (d.train, d.test):
            for x, y in zip(split.x, split.y, strict=True):
                np.testing.assert_allclose(x.reshape(-1, 3).mean(0), COLORS[int(y)], atol=15)


# ------------------------------------------------------------------------------- TerraIncognita


def write_camera_traps(manual: Path) -> dict:
    """A tiny Caltech Camera Traps release: images at locations 38, 43, 100 and 7 (not
    selected), a category not selected ("deer"), and one image annotated twice."""
    images_dir = manual / "eccv_18_all_images_sm"
    cats = [{"id": 1, "name": "bird"}, {"id": 6, "name": "empty"}, {"id": 9, "name": "deer"},
            {"id": 3, "name": "coyote"}]  # fmt: skip
    images, annotations = [], []
    rows = [  # (id, location, color index, category ids)
        ("a", "38", 0, [1]), ("b", "38", 1, [6]), ("c", "38", 2, [9]), ("d", "38", 0, [1, 1]),
        ("e", "43", 1, [6]), ("f", "100", 2, [3]), ("g", 7, 0, [1]), ("h", "38", 2, [3, 6]),
    ]  # fmt: skip
    for k, (image_id, location, color, cat_ids) in enumerate(rows):
        write_image(images_dir / f"{image_id}.jpg", COLORS[color])
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "location": location})
        annotations += [{"id": f"{k}_{c}", "image_id": image_id, "category_id": c} for c in cat_ids]
    data = {"images": images, "annotations": annotations, "categories": cats}
    (manual / "caltech_images_20210113.json").write_text(json.dumps(data))
    return data


def test_camera_trap_selection_is_domainbeds(tmp_path):
    write_camera_traps(tmp_path)
    items = camera_trap_items(
        tmp_path / "caltech_images_20210113.json",
        tmp_path / "eccv_18_all_images_sm",
        "38",
        TERRA_INCOGNITA_CLASSES,
    )
    got = [(p.name, TERRA_INCOGNITA_CLASSES[label]) for p, label in items]
    # "c" is a deer (not selected); "d" is a bird twice (once); "h" is under both categories.
    assert got == [("a.jpg", "bird"), ("b.jpg", "empty"), ("d.jpg", "bird"),
                   ("h.jpg", "coyote"), ("h.jpg", "empty")]  # fmt: skip


def test_terra_incognita_from_camera_traps_and_from_folders(tmp_path):
    write_camera_traps(tmp_path / "manual")
    prepared("terra_incognita", tmp_path, domains=["location_38"])
    with pytest.raises(ValueError, match="No image of location 46"):
        prepared("terra_incognita", tmp_path, domains=["location_46"])
    # The other locations from DomainBed's folders instead.
    for loc in ("100", "43", "46"):
        class_folders(tmp_path / "manual" / "terra_incognita" / f"location_{loc}",
                      TERRA_INCOGNITA_CLASSES[-3:])  # fmt: skip
    prepared("terra_incognita", tmp_path, domains=["location_100", "location_43", "location_46"])
    ds = get_domain_set("terra_incognita", image_size=8, data_dir=tmp_path / "data")
    names = ("location_100", "location_38", "location_43", "location_46")
    assert ds.domain_names() == names
    loc38 = ds.domain("location_38")
    labels = sorted(TERRA_INCOGNITA_CLASSES[y] for y in [*loc38.train.y, *loc38.test.y])
    assert labels == ["bird", "bird", "coyote", "empty", "empty"]
    colors = {7: COLORS[0], 8: COLORS[1], 9: COLORS[2]}
    check_set(ds.__class__(ds.name, ds.domains[2:], 10), names[2:], [6, 6], 8, 10, colors)


# ------------------------------------------------------------------ Office-Home, DomainNet


def test_office_home_dg_reuses_the_office_home_builder(tmp_path):
    root = tmp_path / "manual" / "office_home"  # DomainBed's name for the official folder
    classes = ("Alarm_Clock", "TV", "Webcam")
    for domain in ("Art", "Clipart"):
        class_folders(root / domain, classes)
    prepared("office_home_dg", tmp_path, domains=["Art", "Clipart"])
    ds = dg_photos.office_home_dg(image_size=8, data_dir=tmp_path / "data",
                                  domains=["Art", "Clipart"])  # fmt: skip
    colors = {OFFICE_HOME_CLASSES.index(c): COLORS[k] for k, c in enumerate(classes)}
    check_set(ds, ("Art", "Clipart"), [6, 6], 8, 65, colors)


def test_domainnet_dg_uses_train_and_test_lists_together(tmp_path):
    manual = tmp_path / "manual"
    classes = ("aircraft_carrier", "zigzag")
    for domain in ("real", "sketch"):
        class_folders(manual / domain, classes, per_class=3)
        for split, files in (("train", (0, 1)), ("test", (2,))):
            lines = [f"{domain}/{c}/img_{j}.jpg {DOMAINNET_CLASSES.index(c)}"
                     for c in classes for j in files]  # fmt: skip
            (manual / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    prepared("domainnet_dg", tmp_path, domains=["real", "sketch"])
    ds = dg_photos.domainnet_dg(image_size=8, data_dir=tmp_path / "data",
                                domains=["sketch", "real"])  # fmt: skip
    colors = {DOMAINNET_CLASSES.index(c): COLORS[k] for k, c in enumerate(classes)}
    check_set(ds, ("real", "sketch"), [6, 6], 8, 345, colors)
    # Streamed: the same images and labels, decoded on access, across both TFDS splits.
    streamed = dg_photos.domainnet_dg(image_size=8, data_dir=tmp_path / "data", stream=True,
                                      domains=["sketch", "real"])  # fmt: skip
    streamed.validate()
    for a, b in zip(ds.domains, streamed.domains, strict=True):
        for sa, sb in ((a.train, b.train), (a.test, b.test)):
            assert isinstance(sb.x, dg_photos.StreamedSubset) and sb.x.shape == sa.x.shape
            np.testing.assert_array_equal(sa.y, sb.y)
            np.testing.assert_array_equal(np.asarray(sb.x), sa.x)
            np.testing.assert_array_equal(sb.x[-1], sa.x[-1])
            pick = [len(sa.y) - 1, 0]
            np.testing.assert_array_equal(sb.x[pick], sa.x[pick])
    limited = dg_photos.domainnet_dg(image_size=8, data_dir=tmp_path / "data", stream=True,
                                     domains=["real", "sketch"], max_per_domain=5)  # fmt: skip
    assert [len(d.train) + len(d.test) for d in limited.domains] == [5, 5]


# ------------------------------------------------------------------------------- errors


def test_missing_photo_set_says_what_to_fetch_and_how_to_prepare(tmp_path):
    with pytest.raises(dg_photos.DomainSetNotFoundError) as e:
        get_domain_set("pacs", data_dir=tmp_path / "data")
    assert isinstance(e.value, DatasetNotFoundError)
    message = str(e.value)
    for needed in ("'pacs/art_painting'", str(tmp_path / "data"), "PACS.zip",
                   "PACS/<domain>/<class>/*.jpg", "1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd",
                   "python -m tljax.data.dg_photos prepare pacs"):  # fmt: skip
        assert needed in message


def test_prepare_without_sources_names_them(tmp_path):
    (tmp_path / "manual").mkdir()
    with pytest.raises(FileNotFoundError, match="VLCS.tar.gz"):
        prepared("vlcs", tmp_path, domains=["SUN09"])
    with pytest.raises(FileNotFoundError, match="images and labels are missing"):
        prepared("terra_incognita", tmp_path, domains=["location_43"])
    with pytest.raises(ValueError, match="must be distinct names of"):
        prepared("vlcs", tmp_path, domains=["sun09"])

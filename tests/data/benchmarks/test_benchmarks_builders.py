"""Our TF-free TFDS builders, prepared from tiny fixtures in each dataset's own file layout.

Each test writes a few images (PIL) or a tiny LIBSVM file in the layout the real download
has, runs ``download_and_prepare`` with ``manual_dir`` pointing at it, and reads the
result back with ``load_domain``. Nothing is downloaded (one test serves files from a
local HTTP server to exercise the download path).
"""

from __future__ import annotations

import bz2
import functools
import hashlib
import http.server
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tljax.data.benchmarks import load_domain, prepare_domain
from tljax.data.benchmarks.builders import digits
from tljax.data.benchmarks.builders.domainnet import DOMAINNET_CLASSES
from tljax.data.benchmarks.builders.office import OFFICE31_CLASSES, OFFICE_HOME_CLASSES
from tljax.data.benchmarks.builders.visda import VISDA2017_CLASSES

COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def write_image(path: Path, color, size=(20, 14), mode="RGB", fmt="JPEG") -> None:
    """A solid-color image; ``mode`` other than RGB tests the RGB conversion at build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color).convert(mode)
    image.save(path, format=fmt)


def class_folders(root: Path, classes, per_class=2, ext=".jpg", fmt="JPEG") -> None:
    for k, name in enumerate(classes):
        for j in range(per_class):
            write_image(root / name / f"img_{j}{ext}", COLORS[k % 3], fmt=fmt)


def check_domain(domain, n_train, n_test, size, channels, num_classes) -> None:
    for split, n in ((domain.train, n_train), (domain.test, n_test)):
        assert split.x.shape == (n, *size, channels)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        assert 0 <= split.y.min() and split.y.max() < num_classes


def check_colors(split, classes_to_color) -> None:
    """Each solid image's mean color is the color of its class folder (JPEG-approx.)."""
    for x, y in zip(split.x, split.y, strict=True):
        expected = np.array(classes_to_color[int(y)]) / 255
        np.testing.assert_allclose(x.reshape(-1, x.shape[-1]).mean(0), expected, atol=0.06)


# ---------------------------------------------------------------- USPS


def libsvm_line(label: int, pixel: float, skip_index: int | None = None) -> str:
    fields = [f"{i}:{pixel}" for i in range(1, 257) if i != skip_index]
    return f"{label} " + " ".join(fields)


def test_parse_usps_libsvm_scales_pixels_and_labels_like_torchvision():
    text = libsvm_line(1, -1.0) + "\n" + libsvm_line(10, 1.0, skip_index=5) + "\n"
    images, labels = digits.parse_usps_libsvm(text)
    assert images.shape == (2, 16, 16) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0, 9])
    assert (images[0] == 0).all()
    assert images[1].reshape(-1)[4] == 127  # an omitted LIBSVM index means value 0
    assert images[1].reshape(-1)[0] == 255


def test_parse_usps_libsvm_rejects_bad_lines():
    with pytest.raises(ValueError, match="line 1"):
        digits.parse_usps_libsvm("3 1:0.5 oops\n")
    with pytest.raises(ValueError, match="not in 1..10"):
        digits.parse_usps_libsvm(libsvm_line(11, 0.0))


def write_usps(folder: Path, n_train=5, n_test=3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("usps.bz2", n_train), ("usps.t.bz2", n_test)):
        lines = [libsvm_line(i % 10 + 1, -1.0 + 0.5 * (i % 5)) for i in range(n)]
        (folder / name).write_bytes(bz2.compress("\n".join(lines).encode()))


def test_usps_from_manual_dir(tmp_path):
    write_usps(tmp_path / "manual")
    prepare_domain("usps", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    domain = load_domain("usps", data_dir=tmp_path / "data")
    check_domain(domain, 5, 3, (16, 16), 1, 10)
    # Label i % 10 goes with pixel value -1 + 0.5 * (i % 5), i.e. uint8(0.25 * (i % 5) * 255).
    for x, y in zip(domain.train.x, domain.train.y, strict=True):
        assert np.allclose(x, np.uint8(0.25 * (y % 5) * 255) / 255)
    rgb = load_domain("usps", data_dir=tmp_path / "data", grayscale_to_rgb=True, image_size=28)
    check_domain(rgb, 5, 3, (28, 28), 3, 10)


@pytest.fixture
def http_server(tmp_path):
    """Serves ``tmp_path / 'www'`` on 127.0.0.1; yields the base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    thread.join()


def test_usps_download_path_checks_md5(tmp_path, http_server, monkeypatch):
    url, www = http_server
    write_usps(www)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(
        digits, "USPS_URLS", {s: f"{url}/{n}" for s, n in digits.USPS_FILES.items()}
    )
    md5 = {s: hashlib.md5((www / n).read_bytes()).hexdigest() for s, n in digits.USPS_FILES.items()}
    monkeypatch.setattr(digits, "USPS_MD5", {"train": "0" * 32, "test": md5["test"]})
    with pytest.raises(ValueError, match="MD5"):
        prepare_domain("usps", data_dir=tmp_path / "bad")
    monkeypatch.setattr(digits, "USPS_MD5", md5)
    prepare_domain("usps", data_dir=tmp_path / "data")  # no manual_dir: downloads
    check_domain(load_domain("usps", data_dir=tmp_path / "data"), 5, 3, (16, 16), 1, 10)


# ---------------------------------------------------------------- MNIST-M


def write_mnist_m(root: Path) -> None:
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for i in range(n):
            name = f"{i:08d}.png"
            write_image(root / f"mnist_m_{split}" / name, COLORS[i % 3], (28, 28), fmt="PNG")
            lines.append(f"{name} {i % 3}")
        (root / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("layout", ["nested_folder", "archive", "manual_dir_is_the_folder"])
def test_mnist_m_from_folder_or_archive(tmp_path, layout):
    manual = tmp_path / "manual"
    write_mnist_m(tmp_path / "src" / "mnist_m")
    if layout == "archive":
        manual.mkdir()
        with tarfile.open(manual / "mnist_m.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "src" / "mnist_m", arcname="mnist_m")
    elif layout == "nested_folder":
        shutil.move(tmp_path / "src", manual)
    else:
        shutil.move(tmp_path / "src" / "mnist_m", manual)
    prepare_domain("mnist_m", data_dir=tmp_path / "data", manual_dir=manual)
    domain = load_domain("mnist_m", data_dir=tmp_path / "data")
    check_domain(domain, 4, 2, (28, 28), 3, 10)
    check_colors(domain.train, dict(enumerate(COLORS)))  # PNG: exact up to rounding


# ---------------------------------------------------------------- Office-31 / Office-Home


def test_office31_original_layout_with_odd_image_modes(tmp_path):
    classes = OFFICE31_CLASSES[:3]
    images = tmp_path / "manual" / "domain_adaptation_images" / "amazon" / "images"
    class_folders(images, classes)
    # A grayscale JPEG and an RGBA PNG must be stored as RGB all the same.
    write_image(images / classes[0] / "gray.jpg", (128, 128, 128), mode="L")
    write_image(images / classes[1] / "alpha.png", COLORS[1], mode="RGBA", fmt="PNG")
    prepare_domain("office31/amazon", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    domain = load_domain("office31/amazon", data_dir=tmp_path / "data", image_size=(24, 32))
    check_domain(domain, 8, 8, (24, 32), 3, 31)
    assert domain.test is domain.train  # no official split: the whole domain is both
    assert sorted(np.bincount(domain.train.y, minlength=31).tolist()) == [0] * 28 + [2, 3, 3]


def test_office_home_real_world_from_official_zip(tmp_path):
    classes = ("Alarm_Clock", "TV", "Webcam")
    src = tmp_path / "src" / "OfficeHomeDataset_10072016" / "Real World"
    class_folders(src, classes)
    (tmp_path / "manual").mkdir()
    with zipfile.ZipFile(tmp_path / "manual" / "OfficeHomeDataset_10072016.zip", "w") as zf:
        for path in sorted(src.rglob("*.jpg")):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    prepare_domain(
        "office_home/real_world", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual"
    )
    domain = load_domain("office_home/real_world", data_dir=tmp_path / "data", image_size=16)
    check_domain(domain, 6, 6, (16, 16), 3, 65)
    index = {OFFICE_HOME_CLASSES.index(c): COLORS[k] for k, c in enumerate(classes)}
    check_colors(domain.train, index)


def test_unknown_class_folder_is_an_error(tmp_path):
    images = tmp_path / "manual" / "webcam" / "images"
    class_folders(images, (OFFICE31_CLASSES[0], "not_a_class"))
    with pytest.raises(ValueError, match="not_a_class.*not one of the 31 known classes"):
        prepare_domain(
            "office31/webcam", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual"
        )


# ---------------------------------------------------------------- VisDA-2017


def test_visda2017_synthetic_and_real(tmp_path):
    manual = tmp_path / "manual"
    class_folders(manual / "train", VISDA2017_CLASSES[:2], ext=".png", fmt="PNG")
    # "train" is also a VisDA class: validation/train must not be taken for the train split.
    class_folders(manual / "validation", ("train", "truck", "bus"), per_class=1)
    prepare_domain("visda2017/real", data_dir=tmp_path / "data", manual_dir=manual)
    synthetic = load_domain("visda2017/synthetic", data_dir=tmp_path / "data", image_size=8)
    real = load_domain("visda2017/real", data_dir=tmp_path / "data", image_size=8)
    check_domain(synthetic, 4, 4, (8, 8), 3, 12)
    check_domain(real, 3, 3, (8, 8), 3, 12)
    assert sorted(real.train.y.tolist()) == [2, 10, 11]
    assert sorted(synthetic.train.y.tolist()) == [0, 0, 1, 1]


# ---------------------------------------------------------------- DomainNet


def write_domainnet(manual: Path, domain: str, bad_label: bool = False) -> None:
    classes = ("aircraft_carrier", "The_Eiffel_Tower", "zigzag")
    class_folders(manual / domain, classes, per_class=3)
    for split, files in (("train", (0, 1)), ("test", (2,))):
        lines = [
            f"{domain}/{c}/img_{j}.jpg {DOMAINNET_CLASSES.index(c) + int(bad_label)}"
            for c in classes
            for j in files
        ]
        (manual / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")


def test_domainnet_official_lists(tmp_path):
    write_domainnet(tmp_path / "manual", "sketch")
    prepare_domain("domainnet/sketch", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    domain = load_domain("domainnet/sketch", data_dir=tmp_path / "data", image_size=12)
    check_domain(domain, 6, 3, (12, 12), 3, 345)
    assert sorted(set(domain.test.y.tolist())) == [0, 308, 344]
    limited = load_domain(
        "domainnet/sketch", data_dir=tmp_path / "data", image_size=12, max_examples=2
    )
    check_domain(limited, 2, 2, (12, 12), 3, 345)


def test_domainnet_label_that_contradicts_the_folder_is_an_error(tmp_path):
    write_domainnet(tmp_path / "manual", "clipart", bad_label=True)
    with pytest.raises(ValueError, match="lies in class folder 'aircraft_carrier'"):
        prepare_domain(
            "domainnet/clipart", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual"
        )


def test_class_lists_match_the_official_ones():
    from tensorflow_datasets.image_classification.domainnet import domainnet as tfds_domainnet

    assert DOMAINNET_CLASSES == tuple(tfds_domainnet._CLASS_NAMES)
    key = [n.lower().replace("_", "").replace("-", "") for n in DOMAINNET_CLASSES]
    assert key == sorted(key) and len(set(DOMAINNET_CLASSES)) == 345
    assert len(set(OFFICE31_CLASSES)) == 31 and list(OFFICE31_CLASSES) == sorted(OFFICE31_CLASSES)
    assert len(set(OFFICE_HOME_CLASSES)) == 65
    assert list(OFFICE_HOME_CLASSES) == sorted(OFFICE_HOME_CLASSES)
    assert len(VISDA2017_CLASSES) == 12

"""Domain sets: the DomainSet container, the registry, DomainBed's in/out split, and the
offline sets (rotated_digits, colored_fashion, digits_styles) checked against independent
float64 references (scipy rotations, NumPy Sobel/dilation, the UCI digits and
Fashion-MNIST files themselves) and binomial statistics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from sklearn.datasets import load_digits

from tljax.data import dg_offline, domain_sets
from tljax.data.core import Domain, Split
from tljax.data.domain_sets import (
    DomainSet,
    disjoint_subsets,
    get_domain_set,
    in_out_split,
    register_domain_set,
)
from tljax.data.idx import FASHION_MNIST_DIR
from tljax.data.shifts import resize

HAS_FASHION = Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not HAS_FASHION, reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)


def z_ok(count: int, n: int, p: float, z: float = 4.5) -> bool:
    """Whether ``count`` successes of ``n`` are within ``z`` binomial sds of ``n p``."""
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))


def tiny_domain(name: str, n=10, shape=(4, 4, 1), num_classes=3, label=None) -> Domain:
    rng = np.random.default_rng(len(name))
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, num_classes, n).astype(np.int32) if label is None else np.full(n, label)
    return domain_sets.split_domain(name, x, y, seed=0)


# ------------------------------------------------------------------- DomainSet.validate


def test_validate_accepts_a_good_set_and_names_domains():
    ds = DomainSet("s", (tiny_domain("a"), tiny_domain("b")), num_classes=3)
    ds.validate()
    assert ds.domain_names() == ("a", "b")
    assert ds.domain("b") is ds.domains[1]
    with pytest.raises(ValueError, match=r"no domain 'c'; valid: \['a', 'b'\]"):
        ds.domain("c")


@pytest.mark.parametrize(
    "domains, num_classes, message",
    [
        ((tiny_domain("a"), tiny_domain("a")), 3, r"unique, \['a'\]"),
        ((tiny_domain("a"), tiny_domain("b", shape=(5, 4, 1))), 3, "shapes differ"),
        ((tiny_domain("a"), tiny_domain("b", label=3)), 3, r"label 3 in b\.train.*0\.\.2"),
        ((tiny_domain("a"), tiny_domain("b", label=-1)), 3, "label -1"),
        ((tiny_domain("a"),), 3, "at least two"),
        ((tiny_domain("a"), tiny_domain("b")), 0, "num_classes must be >= 1"),
    ],
)
def test_validate_rejects_bad_sets(domains, num_classes, message):
    with pytest.raises(ValueError, match=message):
        DomainSet("s", domains, num_classes).validate()


def test_validate_rejects_an_empty_train_split():
    empty = Split(np.zeros((0, 4, 4, 1), np.float32), np.zeros(0, np.int32))
    ds = DomainSet("s", (tiny_domain("a"), Domain("b", empty, empty)), num_classes=3)
    with pytest.raises(ValueError, match="'b' has no train data"):
        ds.validate()


# ------------------------------------------------------------------ in/out split, subsets


def test_in_out_split_is_a_seeded_partition_with_domainbeds_sizes():
    for n in (0, 1, 4, 5, 299, 300, 1001):
        a, b = in_out_split(n, seed=[3, 4])
        assert len(b) == int(0.2 * n) and len(a) + len(b) == n
        np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(n))
        assert np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)
    np.testing.assert_array_equal(in_out_split(50, seed=7)[1], in_out_split(50, seed=7)[1])
    assert not np.array_equal(in_out_split(50, seed=7)[1], in_out_split(50, seed=8)[1])
    assert len(in_out_split(10, holdout_fraction=0.0, seed=0)[1]) == 0
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="holdout_fraction"):
            in_out_split(10, holdout_fraction=bad, seed=0)


def test_in_out_split_draws_every_example_with_the_same_probability():
    # Over 2,000 seeds each of 20 indices is "out" with probability 4/20 (uniform draw).
    counts = np.zeros(20)
    for seed in range(2000):
        counts[in_out_split(20, seed=seed)[1]] += 1
    assert all(z_ok(int(c), 2000, 0.2) for c in counts), counts


def test_disjoint_subsets_partition_the_examples():
    subsets = disjoint_subsets(1797, 6, seed=[0, 1])
    assert sorted(len(s) for s in subsets) == [299, 299, 299, 300, 300, 300]
    np.testing.assert_array_equal(np.sort(np.concatenate(subsets)), np.arange(1797))
    with pytest.raises(ValueError, match="Cannot split 3 examples into 4"):
        disjoint_subsets(3, 4, seed=0)


# ----------------------------------------------------------------------------- registry


@pytest.fixture
def clean_registry():
    saved = dict(domain_sets._REGISTERED)
    yield
    domain_sets._REGISTERED.clear()
    domain_sets._REGISTERED.update(saved)
    domain_sets._build.cache_clear()


def toy_builder(*, data_seed: int, image_size: int | None, n: int = 10):
    calls.append((data_seed, image_size, n))
    size = image_size or 4
    return DomainSet(
        "toy", tuple(tiny_domain(k, n=n, shape=(size, size, 1)) for k in "abc"), num_classes=3
    )


calls: list = []


@pytest.mark.usefixtures("clean_registry")
def test_register_and_get_a_domain_set():
    calls.clear()
    register_domain_set("toy", toy_builder, "three random domains")
    assert "toy" in domain_sets.domain_set_names()
    assert domain_sets.domain_set_description("toy") == "three random domains"
    assert domain_sets.domain_set_options("toy") == ("n",)
    ds = get_domain_set("toy", data_seed=2, image_size=5, n=12)
    assert calls == [(2, 5, 12)] and ds.domains[0].train.x.shape[1:] == (5, 5, 1)
    assert get_domain_set("toy", data_seed=2, image_size=5, n=12) is ds  # cached
    assert len(calls) == 1
    with pytest.raises(ValueError, match="read-only"):
        ds.domains[0].train.x[0] = 0
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['m'\]; valid options: \['n'\]"):
        get_domain_set("toy", m=1)
    register_domain_set("toy", "tljax.data.dg_offline:digits_styles", "replaced")
    assert domain_sets.domain_set_options("toy")[0] == "styles"


@pytest.mark.usefixtures("clean_registry")
def test_registry_errors():
    with pytest.raises(ValueError, match=r"Unknown domain set 'rotated_digit'\. Did you mean "
                       r"'rotated_digits'\?.*'colored_fashion'"):  # fmt: skip
        get_domain_set("rotated_digit")
    with pytest.raises(ValueError, match="built in"):
        register_domain_set("pacs", toy_builder, "x")
    with pytest.raises(ValueError, match="module:function"):
        register_domain_set("x", 3, "x")
    register_domain_set("bad", lambda *, data_seed, image_size: "nope", "x")
    with pytest.raises(TypeError, match="returned str, expected a DomainSet"):
        get_domain_set("bad")
    for kwargs, what in (({"data_seed": -1}, "data_seed"), ({"image_size": 0}, "image_size")):
        with pytest.raises(ValueError, match=what):
            get_domain_set("rotated_digits", **kwargs)


def test_builtin_names_and_options():
    names = domain_sets.domain_set_names()
    for name in ("rotated_digits", "colored_fashion", "digits_styles", "pacs", "vlcs",
                 "office_home_dg", "terra_incognita", "domainnet_dg"):  # fmt: skip
        assert name in names
        assert "holdout_fraction" in domain_sets.domain_set_options(name)


# ----------------------------------------------------------------------- rotated_digits


def uci(size=28):
    """The UCI digits resized to ``size`` (float64) and their labels, from scikit-learn."""
    bunch = load_digits()
    x = resize(bunch.images.astype(np.float32)[..., None] / 16, size)
    return x[..., 0].astype(np.float64), bunch.target


def match(images: np.ndarray, references: np.ndarray, atol: float) -> np.ndarray:
    """Index of the nearest reference (L2) of each image; asserts it is within ``atol``."""
    a = images.reshape(len(images), -1).astype(np.float64)
    b = references.reshape(len(references), -1)
    d2 = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]
    idx = d2.argmin(1)
    np.testing.assert_allclose(a, b[idx], atol=atol)
    return idx


def all_examples(domain: Domain) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([domain.train.x, domain.test.x]),
        np.concatenate([domain.train.y, domain.test.y]),
    )


def check_split_and_types(ds: DomainSet, shape, channels_range=(0.0, 1.0)):
    for d in ds.domains:
        n = len(d.train) + len(d.test)
        assert len(d.test) == int(0.2 * n)
        for split in (d.train, d.test):
            assert split.x.dtype == np.float32 and split.y.dtype == np.int32
            assert split.x.shape[1:] == shape
            assert channels_range[0] <= split.x.min() and split.x.max() <= channels_range[1]


def test_rotated_digits_rotates_disjoint_subsets_by_their_angle():
    ds = get_domain_set("rotated_digits", data_seed=3)
    assert ds.domain_names() == ("0", "15", "30", "45", "60", "75") and ds.num_classes == 10
    check_split_and_types(ds, (28, 28, 1))
    source, labels = uci()
    seen = []
    for d in ds.domains:
        # Independent reference: scipy's bilinear rotation, counter-clockwise as displayed.
        angle = float(d.name)
        ref = scipy.ndimage.rotate(source, angle, axes=(2, 1), reshape=False, order=1,
                                   mode="grid-constant")  # fmt: skip
        x, y = all_examples(d)
        idx = match(x[..., 0], np.clip(ref, 0, 1), atol=1e-5)
        np.testing.assert_array_equal(y, labels[idx])
        seen.append(idx)
        if angle:  # the rotation is not the identity: the unrotated digits do not match
            assert np.abs(x[..., 0] - source[idx]).max() > 0.5
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen) == 1797  # disjoint, together all digits


def test_rotated_digits_is_rebuilt_bit_for_bit_from_its_seed():
    a = dg_offline.rotated_digits(data_seed=5, image_size=16)
    b = dg_offline.rotated_digits(data_seed=5, image_size=16)
    c = dg_offline.rotated_digits(data_seed=6, image_size=16)
    assert a.domains[0].train.x.shape[1:] == (16, 16, 1)
    for da, db, dc in zip(a.domains, b.domains, c.domains, strict=True):
        np.testing.assert_array_equal(da.train.x, db.train.x)
        np.testing.assert_array_equal(da.test.y, db.test.y)
        assert not np.array_equal(da.train.y, dc.train.y)


def test_rotated_digits_options():
    ds = dg_offline.rotated_digits(angles=(0, 22.5), holdout_fraction=0.5, image_size=8)
    assert ds.domain_names() == ("0", "22.5")
    assert [len(d.test) for d in ds.domains] == [449, 449]  # int(0.5 * 899), int(0.5 * 898)
    for angles in ((0,), (0, 0.0), (0, float("nan"))):
        with pytest.raises(ValueError, match="angles"):
            dg_offline.rotated_digits(angles=angles)


# ------------------------------------------------------------------------ digits_styles


def sobel_reference(x: np.ndarray) -> np.ndarray:
    """|Sobel gradient| with zero padding, by explicit shifted sums, scaled to max 1."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]

    def at(dr, dc):
        return p[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    gx = sum(s * (at(dr, 1) - at(dr, -1)) for dr, s in ((-1, 1), (0, 2), (1, 1)))
    gy = sum(s * (at(1, dc) - at(-1, dc)) for dc, s in ((-1, 1), (0, 2), (1, 1)))
    m = np.sqrt(gx**2 + gy**2)
    peak = m.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0)


def dilation_reference(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]
    return np.max([p[:, r : r + h, c : c + w] for r in range(3) for c in range(3)], axis=0)


def test_digits_styles_draws_disjoint_subsets_in_four_styles():
    ds = get_domain_set("digits_styles", data_seed=1)
    assert ds.domain_names() == ("plain", "m", "edges", "thick") and ds.num_classes == 10
    check_split_and_types(ds, (28, 28, 3))
    source, labels = uci()
    refs = {"plain": source, "edges": sobel_reference(source), "thick": dilation_reference(source)}
    seen = []
    for name, ref in refs.items():
        x, y = all_examples(ds.domain(name))
        np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey styles in 3 channels
        idx = match(x[..., 0], ref, atol=1e-5)
        np.testing.assert_array_equal(y, labels[idx])
        seen.append(idx)
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen)
    # The MNIST-M domain holds the remaining digits: their count and labels.
    rest = np.setdiff1d(np.arange(1797), seen)
    x, y = all_examples(ds.domain("m"))
    assert len(y) == len(rest)
    np.testing.assert_array_equal(
        np.bincount(y, minlength=10), np.bincount(labels[rest], minlength=10)
    )
    # Photo backgrounds: about half the photos are in colour, so many images are not grey.
    assert (np.abs(x[..., 0] - x[..., 1]).max(axis=(1, 2)) > 0.1).mean() > 0.3


def test_digits_styles_seed_and_options():
    a = dg_offline.digits_styles(data_seed=2, styles=("m", "inverted", "noisy"), image_size=12)
    b = dg_offline.digits_styles(data_seed=2, styles=("m", "inverted", "noisy"), image_size=12)
    for da, db in zip(a.domains, b.domains, strict=True):
        np.testing.assert_array_equal(da.train.x, db.train.x)
    source, _ = uci(12)
    x, _ = all_examples(a.domain("inverted"))
    match(1 - x[..., 0], source, atol=1e-6)
    with pytest.raises(ValueError, match="styles must be at least two distinct names"):
        dg_offline.digits_styles(styles=("plain", "blurry"))


# ---------------------------------------------------------------------- colored_fashion


@pytest.fixture(scope="module")
def fashion_splits():
    from tljax.data.idx import load_fashion_mnist

    return load_fashion_mnist()


@pytest.fixture
def fashion_14(fashion_splits, monkeypatch):
    """Fashion-MNIST's 70,000 images at every second pixel (uint8 bytes -> indices) and
    classes; the builders read the files once per module (``fashion_splits``)."""
    monkeypatch.setattr(dg_offline, "load_fashion_mnist", lambda directory: fashion_splits)
    train, test = fashion_splits
    images = np.rint(np.concatenate([train.x, test.x])[:, ::2, ::2, 0] * 255).astype(np.uint8)
    classes = np.concatenate([train.y, test.y])
    index: dict[bytes, list[int]] = {}
    for i, image in enumerate(images):
        index.setdefault(image.tobytes(), []).append(i)
    return index, classes


@needs_fashion
def test_colored_fashion_follows_the_colored_mnist_recipe(fashion_14):
    index, classes = fashion_14
    ds = get_domain_set("colored_fashion", data_seed=0, per_domain=3000)
    assert ds.domain_names() == ("+90%", "+80%", "-90%") and ds.num_classes == 2
    check_split_and_types(ds, (14, 14, 2))
    used = []
    for d, agree in zip(ds.domains, (0.9, 0.8, 0.1), strict=True):
        x, y = all_examples(d)
        n = len(y)
        assert n == 3000
        mass = x.sum(axis=(1, 2))  # (n, 2)
        assert np.all(np.min(mass, axis=1) == 0)  # one channel is zero
        color = mass.argmax(1)
        grey = np.rint(x.sum(-1) * 255).astype(np.uint8)
        idx = [index[g.tobytes()] for g in grey]  # every image is a Fashion-MNIST image
        used.extend(i[0] for i in idx if len(i) == 1)
        cls = np.array([classes[i[0]] for i in idx])
        binary = (cls < 5).astype(int)  # T-shirt .. Coat -> 1, Sandal .. Ankle boot -> 0
        assert z_ok(int((y != binary).sum()), n, 0.25)  # label noise
        assert z_ok(int((color == y).sum()), n, agree)  # colour-label agreement
        assert z_ok(int((color == binary).sum()), n, 0.25 * (1 - agree) + 0.75 * agree)
        # The binarisation map, seen through the 25% label noise.
        assert z_ok(int(y[cls < 5].sum()), int((cls < 5).sum()), 0.75)
        assert z_ok(int(y[cls >= 5].sum()), int((cls >= 5).sum()), 0.25)
    assert len(set(used)) == len(used)  # environments are disjoint


@needs_fashion
def test_colored_fashion_sizes_and_seeds(fashion_splits, monkeypatch):
    # Fashion-MNIST read once for the four builds.
    monkeypatch.setattr(dg_offline, "load_fashion_mnist", lambda directory: fashion_splits)
    ds = dg_offline.colored_fashion(per_domain=20, image_size=28, flips=(0.1, 0.9))
    assert ds.domain_names() == ("+90%", "-90%")
    assert ds.domains[0].train.x.shape == (16, 28, 28, 2)
    assert dg_offline.colored_fashion(per_domain=5, image_size=7).domains[0].test.x.shape == (
        1, 7, 7, 2)  # fmt: skip
    a, b, c = (dg_offline.colored_fashion(per_domain=200, data_seed=s) for s in (4, 4, 5))
    for da, db, dc in zip(a.domains, b.domains, c.domains, strict=True):
        np.testing.assert_array_equal(da.train.x, db.train.x)
        np.testing.assert_array_equal(da.test.y, db.test.y)
        assert not np.array_equal(da.train.x, dc.train.x)


def test_color_environment_statistics_and_determinism():
    n = 20000
    images = np.random.default_rng(0).random((n, 3, 3), dtype=np.float32) + np.float32(0.01)
    classes = np.arange(n) % 10
    x, y = dg_offline.color_environment(np.minimum(images, 1), classes, 0.2, seed=[1, 2])
    x2, y2 = dg_offline.color_environment(np.minimum(images, 1), classes, 0.2, seed=[1, 2])
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    color = x.sum(axis=(1, 2)).argmax(1)
    np.testing.assert_array_equal(x[np.arange(n), ..., color], np.minimum(images, 1))
    np.testing.assert_array_equal(x[np.arange(n), ..., 1 - color], 0)
    assert z_ok(int((y != (classes < 5)).sum()), n, 0.25)
    assert z_ok(int((color != y).sum()), n, 0.2)
    assert dg_offline.environment_name(0.1) == "+90%"
    assert dg_offline.environment_name(0.9) == "-90%"


def test_colored_fashion_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        dg_offline.colored_fashion(directory=tmp_path)


def test_command_line_lists_and_shows_sets(capsys):
    domain_sets.main(["list"])
    out = capsys.readouterr().out
    assert "rotated_digits" in out and "PACS" in out
    domain_sets.main(["show", "rotated_digits", "--image_size", "8", "--option",
                      "holdout_fraction=0.5"])  # fmt: skip
    out = capsys.readouterr().out
    assert "6 domains, 10 classes, examples (8, 8, 1) float32" in out
    assert "75: in    150  out    149" in out  # int(0.5 * 299) out


@pytest.mark.usefixtures("clean_registry")
def test_installed_plugin_sets_are_found_through_entry_points(monkeypatch):
    from importlib.metadata import EntryPoint

    ep = EntryPoint("plugged", "tljax.data.dg_offline:digits_styles", "tljax.domain_sets")
    monkeypatch.setattr(domain_sets._registry, "entry_points", lambda group: {ep.name: ep})
    assert "plugged" in domain_sets.domain_set_names()
    assert domain_sets.domain_set_options("plugged")[0] == "styles"
    ds = get_domain_set("plugged", image_size=8, styles=("plain", "inverted"))
    assert ds.domain_names() == ("plain", "inverted")
    assert "drawn in one style" in domain_sets.domain_set_description("plugged")

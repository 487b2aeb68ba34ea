"""Tests of the synthetic shifts, each against an independent NumPy/PIL computation."""

import numpy as np
import pytest
from PIL import Image

from tljax.data import shifts


@pytest.fixture
def digits():
    rng = np.random.default_rng(0)
    return rng.random((16, 12, 12), dtype=np.float32)


def test_background_photos_are_cached_rgb_in_unit_range():
    photos = shifts.background_photos()
    assert len(photos) == len(shifts.BACKGROUND_NAMES)  # all bundled photos load offline
    for p in photos:
        assert p.dtype == np.float32 and p.ndim == 3 and p.shape[2] == 3
        assert 0.0 <= p.min() and p.max() <= 1.0
        assert not p.flags.writeable
    assert all(a is b for a, b in zip(photos, shifts.background_photos(), strict=True))


def test_mnist_m_is_reproducible_from_seed(digits):
    a = shifts.mnist_m(digits, seed=3)
    np.testing.assert_array_equal(a, shifts.mnist_m(digits, seed=3))
    assert not np.array_equal(a, shifts.mnist_m(digits, seed=4))
    assert a.shape == (16, 12, 12, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, shifts.mnist_m(digits[..., None], seed=3))


def test_mnist_m_equals_abs_difference_with_recomputed_crop(digits):
    seed, (n, h, w) = 11, digits.shape
    photos = shifts.background_photos()
    rng = np.random.default_rng(seed)  # the documented draw order, recomputed here
    k = rng.integers(0, len(photos), size=n)
    top = rng.integers(0, np.array([photos[i].shape[0] for i in k]) - h + 1)
    left = rng.integers(0, np.array([photos[i].shape[1] for i in k]) - w + 1)
    out = shifts.mnist_m(digits, seed=seed)
    for i in range(n):
        patch = photos[k[i]][top[i] : top[i] + h, left[i] : left[i] + w]
        np.testing.assert_array_equal(out[i], np.abs(patch - digits[i][..., None]))


def test_mnist_m_crops_are_contiguous_windows_of_custom_photos():
    # Pixel values encode their coordinates, so a zero image reveals its crop exactly.
    rows, cols = np.meshgrid(np.arange(20), np.arange(30), indexing="ij")
    photo = np.stack([rows / 19, cols / 29, np.zeros_like(rows)], -1).astype(np.float32)
    out = shifts.mnist_m(np.zeros((50, 5, 7), np.float32), seed=0, backgrounds=[photo])
    for o in out:
        r0, c0 = round(o[0, 0, 0] * 19), round(o[0, 0, 1] * 29)
        np.testing.assert_array_equal(o, photo[r0 : r0 + 5, c0 : c0 + 7])
    assert len({(round(o[0, 0, 0] * 19), round(o[0, 0, 1] * 29)) for o in out}) > 10


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 5, 5), np.uint8), "floating point"),
        (np.zeros((5, 5), np.float32), "shape"),
        (np.zeros((2, 5, 5, 2), np.float32), "shape"),
        (np.full((2, 5, 5), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((2, 5, 5), np.nan, np.float32), r"\[0, 1\]"),
    ],
)
def test_bad_images_raise_clear_errors(images, match):
    for fn in (shifts.invert, shifts.to_rgb, lambda x: shifts.mnist_m(x, seed=0)):
        with pytest.raises(ValueError, match=match):
            fn(images)


def test_mnist_m_rejects_images_larger_than_photos():
    with pytest.raises(ValueError, match="smallest background"):
        shifts.mnist_m(np.zeros((1, 400, 400), np.float32), seed=0)


def test_rotate_special_angles(digits):
    np.testing.assert_array_equal(shifts.rotate(digits, 360), digits)
    np.testing.assert_array_equal(shifts.rotate(digits, 90), np.rot90(digits, 1, axes=(1, 2)))
    np.testing.assert_array_equal(shifts.rotate(digits, -90), np.rot90(digits, 3, axes=(1, 2)))
    # The interpolating path turns the same way as the exact one.
    np.testing.assert_allclose(
        shifts.rotate(digits, 90 + 1e-7), np.rot90(digits, 1, axes=(1, 2)), atol=1e-5
    )
    np.testing.assert_allclose(shifts.rotate(digits, 360 - 1e-7), digits, atol=1e-5)
    assert shifts.rotate(digits[..., None], 30).shape == (16, 12, 12, 1)
    assert shifts.rotate(np.zeros((2, 6, 9, 3), np.float32), 90).shape == (2, 6, 9, 3)


def test_rotate_fills_corners_and_keeps_the_centre():
    out = shifts.rotate(np.ones((1, 11, 11), np.float32), 45, fill=0.25)
    assert out[0, 5, 5] == 1.0 and out[0, 0, 0] == 0.25
    with pytest.raises(ValueError, match="finite"):
        shifts.rotate(np.ones((1, 3, 3), np.float32), float("nan"))


def test_invert_and_to_rgb(digits):
    np.testing.assert_array_equal(shifts.invert(digits), 1 - digits)
    np.testing.assert_array_equal(shifts.invert(shifts.invert(digits)), digits)
    rgb = shifts.to_rgb(digits)
    assert rgb.shape == (16, 12, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], digits)


def test_scale_zooms_about_the_centre():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 3:6, 3:6] = 1.0
    np.testing.assert_array_equal(shifts.scale(x, 1.0), x)
    big = shifts.scale(x, 3.0)
    assert big.shape == x.shape and np.all(big[0, 2:7, 2:7] > 0.9)
    small = shifts.scale(np.ones((1, 9, 9), np.float32), 0.5, fill=0.0)
    assert small[0, 4, 4] > 0.5 and small[0, 0, 0] < 0.05
    with pytest.raises(ValueError, match="factor must be > 0"):
        shifts.scale(x, 0.0)


def test_gaussian_noise(digits):
    a = shifts.gaussian_noise(digits, 0.2, seed=1)
    np.testing.assert_array_equal(a, shifts.gaussian_noise(digits, 0.2, seed=1))
    assert not np.array_equal(a, shifts.gaussian_noise(digits, 0.2, seed=2))
    assert a.shape == digits.shape and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(shifts.gaussian_noise(digits, 0.0, seed=1), digits)
    with pytest.raises(ValueError, match="std must be >= 0"):
        shifts.gaussian_noise(digits, -1.0, seed=0)


@pytest.mark.parametrize("size", [(28, 28), (5, 9), (12, 12)])
def test_resize_matches_pil_bilinear(digits, size):
    out = shifts.resize(digits, size)
    expected = np.stack(
        [
            np.asarray(Image.fromarray(im, mode="F").resize(size[::-1], Image.BILINEAR))
            for im in digits
        ]
    )
    assert out.shape == (16, *size)
    np.testing.assert_allclose(out, expected, atol=1e-5)

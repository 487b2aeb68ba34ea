"""Synthetic domain shifts on image batches, deterministic from a seed (pure NumPy).

Every function takes float images in ``[0, 1]`` as ``(n, h, w)``, ``(n, h, w, 1)`` or
``(n, h, w, 3)`` and returns float32. Shape-preserving shifts (rotate, invert, scale,
noise) keep the input's layout; ``mnist_m`` and ``to_rgb`` always return ``(n, h, w, 3)``.
Randomised shifts draw from ``np.random.default_rng(seed)`` only, so a seed rebuilds the
same arrays bit for bit (given the same set of background photos, see
:func:`background_photos`).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.ndimage

# Natural photographs bundled inside the scikit-image wheel (no pooch download needed).
BACKGROUND_NAMES: tuple[str, ...] = tuple(
    "astronaut brick camera chelsea clock coffee coins grass gravel hubble_deep_field "
    "immunohistochemistry moon rocket".split()
)


def _check_images(images: np.ndarray, fn: str) -> np.ndarray:
    """Returns ``images`` as float32 NHWC after checking dtype, shape and value range."""
    arr = np.asarray(images)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{fn}: images must be floating point in [0, 1], got dtype {arr.dtype}; "
            "convert uint8 images with `x.astype(np.float32) / 255`."
        )
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or 0 in arr.shape[1:3]:
        raise ValueError(
            f"{fn}: images must have shape (n, h, w), (n, h, w, 1) or (n, h, w, 3) with "
            f"h, w >= 1, got {np.shape(images)}."
        )
    if arr.size:
        lo, hi = float(arr.min()), float(arr.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also rejects NaN
            raise ValueError(f"{fn}: image values must lie in [0, 1], got min {lo}, max {hi}.")
    return arr.astype(np.float32, copy=False)


def _like_input(out: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Drops the channel axis again when the caller passed ``(n, h, w)``."""
    return out[..., 0] if np.ndim(images) == 3 else out


def _check_finite(value: float, name: str, fn: str) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}.")
    return float(value)


@functools.cache
def _load_backgrounds() -> tuple[np.ndarray, ...]:
    from skimage import data

    photos = []
    for name in BACKGROUND_NAMES:
        try:
            img = np.asarray(getattr(data, name)())
        except (ImportError, OSError, ValueError) as err:
            warnings.warn(
                f"Background photo skimage.data.{name} did not load ({err}); MNIST-M style "
                "shifts use the remaining photos and differ from builds that have it.",
                stacklevel=3,
            )
            continue
        img = img.astype(np.float32) / np.float32(255.0)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        img = np.ascontiguousarray(img[..., :3])
        img.flags.writeable = False
        photos.append(img)
    if not photos:
        raise RuntimeError(
            f"None of the scikit-image photos {BACKGROUND_NAMES} could be loaded; "
            "reinstall scikit-image (`pip install scikit-image`)."
        )
    return tuple(photos)


def background_photos() -> list[np.ndarray]:
    """Returns the bundled scikit-image photographs used as MNIST-M backgrounds.

    The photos are those of :data:`BACKGROUND_NAMES` in that order, as read-only float32
    RGB arrays ``(H, W, 3)`` in ``[0, 1]`` (grayscale ones replicated to 3 channels).
    They are loaded once per process.

    Returns:
      A new list of the cached photo arrays.

    Raises:
      RuntimeError: if no photo can be loaded.
    """
    return list(_load_backgrounds())


def mnist_m_crops(
    n: int,
    height: int,
    width: int,
    *,
    seed: int | Sequence[int],
    backgrounds: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws the background crops that :func:`mnist_m` uses.

    With ``rng = np.random.default_rng(seed)`` the draws are, in this order:
    ``photo = rng.integers(0, len(backgrounds), n)``, then
    ``top = rng.integers(0, H[photo] - height + 1)`` and
    ``left = rng.integers(0, W[photo] - width + 1)``.

    Args:
      n: number of crops.
      height: crop height.
      width: crop width.
      seed: seed of ``np.random.default_rng``.
      backgrounds: RGB photos ``(H, W, 3)``; defaults to :func:`background_photos`.

    Returns:
      ``(photo, top, left)``: int64 arrays of shape ``(n,)``.

    Raises:
      ValueError: if a photo is smaller than ``height`` x ``width``.
    """
    photos = background_photos() if backgrounds is None else list(backgrounds)
    if not photos:
        raise ValueError("mnist_m: backgrounds is empty; pass at least one RGB photo.")
    sizes = np.array([p.shape[:2] for p in photos], dtype=np.int64)
    if height > sizes[:, 0].min() or width > sizes[:, 1].min():
        raise ValueError(
            f"mnist_m: images of size {height}x{width} do not fit in the smallest background "
            f"photo ({sizes[:, 0].min()}x{sizes[:, 1].min()}); use smaller images."
        )
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, len(photos), size=n)
    top = rng.integers(0, sizes[photo, 0] - height + 1)
    left = rng.integers(0, sizes[photo, 1] - width + 1)
    return photo, top, left


def mnist_m(
    images: np.ndarray,
    *,
    seed: int | Sequence[int],
    backgrounds: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Blends images with random crops of natural photos, the MNIST-M recipe.

    Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016: for each
    image a random photo and a random crop of the image's size are drawn (see
    :func:`mnist_m_crops`) and ``out = |patch - image|`` per channel.

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.
      seed: seed of ``np.random.default_rng``; the same seed gives the same output.
      backgrounds: RGB photos ``(H, W, 3)`` in ``[0, 1]``; defaults to
        :func:`background_photos` (the original used BSDS500 photos).

    Returns:
      float32 ``(n, h, w, 3)`` in ``[0, 1]``.

    Raises:
      ValueError: on a bad shape, dtype or value range, or images larger than a photo.
    """
    x = _check_images(images, "mnist_m")
    photos = background_photos() if backgrounds is None else list(backgrounds)
    n, h, w, _ = x.shape
    photo, top, left = mnist_m_crops(n, h, w, seed=seed, backgrounds=photos)
    for k, bg in enumerate(photos):
        if np.ndim(bg) != 3 or np.shape(bg)[-1] < 3:
            raise ValueError(
                f"mnist_m: background {k} must be an RGB photo (H, W, 3), got {np.shape(bg)}."
            )
    photos = [np.asarray(bg, np.float32)[..., :3] for bg in photos]
    out = np.empty((n, h, w, 3), np.float32)
    # A plain loop of slice copies is ~10x faster than NumPy fancy-index gathers here.
    for i, (p, t, c) in enumerate(zip(photo.tolist(), top.tolist(), left.tolist(), strict=True)):
        out[i] = photos[p][t : t + h, c : c + w]
    np.subtract(out, x, out=out)
    return np.abs(out, out=out)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Replicates grayscale images to 3 channels (RGB input is returned as a float32 copy).

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.

    Returns:
      float32 ``(n, h, w, 3)``.

    Raises:
      ValueError: on a bad shape, dtype or value range.
    """
    x = _check_images(images, "to_rgb")
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x.copy()


def invert(images: np.ndarray) -> np.ndarray:
    """Returns ``1 - images`` (negative images).

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.

    Returns:
      float32 array of the input's shape.

    Raises:
      ValueError: on a bad shape, dtype or value range.
    """
    x = _check_images(images, "invert")
    return _like_input(np.float32(1.0) - x, images)


def gaussian_noise(images: np.ndarray, std: float, *, seed: int | Sequence[int]) -> np.ndarray:
    """Adds i.i.d. Gaussian noise and clips to ``[0, 1]``.

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.
      std: noise standard deviation, ``>= 0``.
      seed: seed of ``np.random.default_rng``.

    Returns:
      float32 array of the input's shape.

    Raises:
      ValueError: on a bad shape, dtype or value range, or a negative/non-finite ``std``.
    """
    x = _check_images(images, "gaussian_noise")
    std = _check_finite(std, "std", "gaussian_noise")
    if std < 0:
        raise ValueError(f"gaussian_noise: std must be >= 0, got {std}.")
    noise = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
    return _like_input(np.clip(x + np.float32(std) * noise, 0.0, 1.0), images)


def _bilinear(x: np.ndarray, src_r: np.ndarray, src_c: np.ndarray, fill: float) -> np.ndarray:
    """Samples NHWC ``x`` at the (h_out, w_out) source grids; outside the image is ``fill``."""
    h, w = x.shape[1:3]
    r = np.clip(src_r + 1.0, 0.0, h + 1.0)  # +1: coordinates in the fill-padded image
    c = np.clip(src_c + 1.0, 0.0, w + 1.0)
    r0 = np.minimum(np.floor(r).astype(np.intp), h)
    c0 = np.minimum(np.floor(c).astype(np.intp), w)
    fr = (r - r0).astype(np.float32)[..., None]
    fc = (c - c0).astype(np.float32)[..., None]
    out = np.empty(x.shape[:1] + src_r.shape + x.shape[3:], np.float32)
    for i in range(0, x.shape[0], 4096):  # bounds the temporaries for large batches
        p = np.pad(x[i : i + 4096], ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=fill)
        top = p[:, r0, c0] * (1 - fc) + p[:, r0, c0 + 1] * fc
        bottom = p[:, r0 + 1, c0] * (1 - fc) + p[:, r0 + 1, c0 + 1] * fc
        out[i : i + 4096] = top * (1 - fr) + bottom * fr
    return np.clip(out, 0.0, 1.0, out=out)


def rotate(images: np.ndarray, degrees: float, *, fill: float = 0.0) -> np.ndarray:
    """Rotates images counter-clockwise (as displayed) about their centre, keeping the size.

    Multiples of 90 degrees on square images are exact (``np.rot90``); other angles use
    bilinear interpolation, with ``fill`` where the rotated image has no source pixel.

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.
      degrees: rotation angle in degrees.
      fill: value in ``[0, 1]`` for pixels rotated in from outside the image.

    Returns:
      float32 array of the input's shape.

    Raises:
      ValueError: on a bad shape, dtype or value range, or a non-finite angle or bad fill.
    """
    x = _check_images(images, "rotate")
    degrees = _check_finite(degrees, "degrees", "rotate")
    fill = _check_finite(fill, "fill", "rotate")
    if not 0.0 <= fill <= 1.0:
        raise ValueError(f"rotate: fill must lie in [0, 1], got {fill}.")
    h, w = x.shape[1:3]
    if degrees % 90 == 0 and (h == w or degrees % 180 == 0):
        return _like_input(np.rot90(x, k=int(degrees // 90) % 4, axes=(1, 2)).copy(), images)
    theta = math.radians(degrees)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dr, dc = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    # Inverse map of a counter-clockwise rotation in (row down, column right) coordinates.
    src_r = cy + dr * math.cos(theta) + dc * math.sin(theta)
    src_c = cx - dr * math.sin(theta) + dc * math.cos(theta)
    return _like_input(_bilinear(x, src_r, src_c, fill), images)


def scale(images: np.ndarray, factor: float, *, fill: float = 0.0) -> np.ndarray:
    """Zooms images about their centre, keeping the size.

    ``factor > 1`` zooms in (the border is cropped away), ``factor < 1`` zooms out (the
    image shrinks and ``fill`` surrounds it; a Gaussian prefilter with
    ``sigma = (1 / factor - 1) / 2`` avoids aliasing). Bilinear interpolation.

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.
      factor: zoom factor, ``> 0``.
      fill: value in ``[0, 1]`` around a shrunk image.

    Returns:
      float32 array of the input's shape.

    Raises:
      ValueError: on a bad shape, dtype or value range, or a non-positive factor or bad fill.
    """
    x = _check_images(images, "scale")
    factor = _check_finite(factor, "factor", "scale")
    fill = _check_finite(fill, "fill", "scale")
    if factor <= 0:
        raise ValueError(f"scale: factor must be > 0, got {factor}.")
    if not 0.0 <= fill <= 1.0:
        raise ValueError(f"scale: fill must lie in [0, 1], got {fill}.")
    if factor == 1.0:
        return _like_input(x.copy(), images)
    if factor < 1.0:
        sigma = (1.0 / factor - 1.0) / 2.0
        x = scipy.ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="constant", cval=fill)
    h, w = x.shape[1:3]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    src_r, src_c = np.meshgrid(
        cy + (np.arange(h) - cy) / factor, cx + (np.arange(w) - cx) / factor, indexing="ij"
    )
    return _like_input(_bilinear(x, src_r, src_c, fill), images)


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) antialiased bilinear (triangle filter) weights, as in PIL's resize."""
    ratio = n_in / n_out
    support = max(ratio, 1.0)
    centres = (np.arange(n_out) + 0.5) * ratio
    weights = np.maximum(
        0.0, 1.0 - np.abs(np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / support
    )
    return weights / weights.sum(axis=1, keepdims=True)


def resize(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resizes images with antialiased bilinear interpolation (PIL's ``BILINEAR``).

    Args:
      images: ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` floats in ``[0, 1]``.
      size: output side length, or ``(height, width)``.

    Returns:
      float32 ``(n, height, width[, c])``, the input's layout.

    Raises:
      ValueError: on a bad shape, dtype or value range, or a size below 1.
    """
    x = _check_images(images, "resize")
    out_h, out_w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if min(out_h, out_w) < 1:
        raise ValueError(f"resize: size must be >= 1, got {size!r}.")
    rows = _resize_weights(x.shape[1], int(out_h)).astype(np.float32)
    cols = _resize_weights(x.shape[2], int(out_w)).astype(np.float32)
    # (n, c, h, w) so both passes are batched matrix products.
    out = rows @ x.transpose(0, 3, 1, 2) @ cols.T
    out = np.clip(out.transpose(0, 2, 3, 1), 0.0, 1.0)
    return _like_input(np.ascontiguousarray(out), images)

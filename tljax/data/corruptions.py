"""The 15 ImageNet-C / CIFAR-10-C corruptions at 5 severities, in NumPy, seeded.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. Severity parameters are those of the CIFAR-10-C reference code,
``ImageNet-C/create_c/make_cifar_c.py`` in github.com/hendrycks/robustness (commit
8190fe3), listed in :data:`PARAMS`; the code here is our own. Every corruption is
``fn(images, severity, rng) -> images``: float32 NHWC in ``[0, 1]`` with 1 (grey) or 3
(RGB) channels in, the same shape and dtype out, in ``[0, 1]``; ``rng`` is a
``np.random.Generator`` or a seed, so a seed gives the same images bit for bit.

Deviations from the reference (it works on 32x32 PIL images with OpenCV, ImageMagick and
photo files; see ``docs/corruptions.md``):

* ``motion_blur`` (and the streaks of ``snow``): a one-sided, Gaussian-weighted line kernel
  of ``2*ceil(radius)+1`` taps in NumPy (the shape of ImageMagick's ``MotionBlurImage``)
  instead of Wand/ImageMagick; edge pixels are repeated.
* ``frost``: the reference blends crops of six frost photographs, which are not available
  offline; we blend a procedurally generated frost texture (plasma-fractal haze plus
  ridged fractal "crystal" veins, bluish white on RGB) with the same weights.
* ``zoom_blur`` and the zoom in ``snow``: a continuous zoom about the centre (bilinear)
  instead of crop-to-integer-size-and-resize, which at 16-32 px rounds small zooms away.
* ``pixelate``: area (box) downsampling to ``int(side*c)`` as in the reference, then
  nearest-neighbour upsampling (PIL ``BOX`` upsampling blends pixels at block edges), so
  the result is constant over blocks.
* ``glass_blur``: each pixel copies a random neighbour, as the reference does in effect
  (its swap of NumPy views copies; see :func:`glass_blur`), with no rounding to uint8
  between steps.
* ``elastic_transform``'s pixel-size constants scale with the image side as the
  reference's do with ``IMSIZE``; ``fog``'s fractal is made at the next power of two >=
  the side and cropped.
* No rounding to uint8 at the end, except ``jpeg_compression`` (PIL JPEG codec).

The task families built on them are in :mod:`tljax.data.corruption_tasks`.
"""

from __future__ import annotations

import io
import math

import numpy as np
from scipy import ndimage

# Severity 1..5 parameters of make_cifar_c.py (hendrycks/robustness, commit 8190fe3).
PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt-and-pepper amount
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # zooms arange(1, c, 0.01)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),  # loc, scale, zoom, threshold, blur radius, blur sigma, image weight
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image, frost
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # amount, wibble decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor about the per-channel mean
    "elastic_transform": (
        (0, 0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ),  # alpha, sigma, affine jitter, as fractions of the side (reference: x32)
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downsampling factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # quality
}
CATEGORIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
NAMES: tuple[str, ...] = tuple(n for group in CATEGORIES.values() for n in group)


def _prepare(images, severity: int, rng, name: str):
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name}: images must be float NHWC with 1 or 3 channels, got {x.dtype} {x.shape}."
        )
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"{name}: severity must be an integer in 1..5, got {severity!r}.")
    if rng is None:
        raise ValueError(f"{name}: rng must be a numpy Generator or a seed, not None.")
    return x.astype(np.float64), PARAMS[name][int(severity) - 1], np.random.default_rng(rng)


def _out(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _grey(x: np.ndarray) -> np.ndarray:
    """Luma (ITU-R 601, as OpenCV's RGB2GRAY) as ``(n, h, w, 1)``."""
    if x.shape[-1] == 1:
        return x
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]


def _border(i: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Integer indices folded into ``[0, size)``: ``"mirror"`` (..., 2, 1 | 0, 1, ...,
    OpenCV's REFLECT_101) or ``"reflect"`` (..., 1, 0 | 0, 1, ..., scipy's)."""
    if size == 1:
        return np.zeros_like(i)
    if mode == "mirror":
        i = np.mod(i, 2 * size - 2)
        return np.where(i >= size, 2 * size - 2 - i, i)
    i = np.mod(i, 2 * size)
    return np.where(i >= size, 2 * size - 1 - i, i)


def _sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear sampling ``x[n, rows[n, i, j], cols[n, i, j], :]`` for all n, i, j; outside
    points are read from the border-extended image (``mode`` of :func:`_border`)."""
    n, h, w, _ = x.shape
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = r0.astype(int), c0.astype(int)
    idx = np.arange(n)[:, None, None]
    ra, rb = _border(r0, h, mode), _border(r0 + 1, h, mode)
    ca, cb = _border(c0, w, mode), _border(c0 + 1, w, mode)
    top = x[idx, ra, ca] * (1 - fc) + x[idx, ra, cb] * fc
    bottom = x[idx, rb, ca] * (1 - fc) + x[idx, rb, cb] * fc
    return top * (1 - fr) + bottom * fr


def _zoom_matrix(size: int, factor: float) -> np.ndarray:
    """``(size, size)`` bilinear interpolation matrix of a zoom by ``factor`` about the
    centre, edges repeated."""
    centre = (size - 1) / 2
    p = np.clip(centre + (np.arange(size) - centre) / factor, 0, size - 1)
    lo = np.minimum(np.floor(p).astype(int), max(size - 2, 0))
    frac = p - lo
    m = np.zeros((size, size))
    m[np.arange(size), lo] += 1 - frac
    if size > 1:
        m[np.arange(size), lo + 1] += frac
    return m


def _separable(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ image @ cols.T`` for every image and channel of NHWC ``x``."""
    planes = np.moveaxis(x, -1, 1)  # (n, c, h, w)
    return np.moveaxis(rows @ planes @ cols.T, 1, -1)


def _zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zooms in by ``factor`` about the image centre (bilinear, edges repeated)."""
    h, w = x.shape[1:3]
    return _separable(x, _zoom_matrix(h, factor), _zoom_matrix(w, factor))


def _line_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """One-sided motion blur along ``angles`` (degrees, one per image): the weighted sum of
    the pixels ``i = 0..2*ceil(radius)`` steps away, weights ``exp(-i^2 / (2 sigma^2))``."""
    n, h, w, _ = x.shape
    steps = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-(steps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    theta = np.deg2rad(angles)[:, None, None]
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    idx = np.arange(n)[:, None, None]
    out = np.zeros_like(x)
    for i, weight in zip(steps, weights):
        # ImageMagick's rounding: ceil(v - 0.5).
        dy = np.ceil(i * np.sin(theta) - 0.5).astype(int)
        dx = np.ceil(i * np.cos(theta) - 0.5).astype(int)
        out += weight * x[idx, np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)]
    return out


def plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` diamond-square height maps ``(n, size', size')`` in ``[0, 1]``, ``size'`` the
    next power of two >= ``size``; ``decay``: how fast the random jitter shrinks per
    level (larger: smoother). The recurrence of the reference's ``plasma_fractal``."""
    m = 1 << max(int(size) - 1, 1).bit_length()
    maps = np.zeros((n, m, m))
    step, wibble = m, 100.0

    def jitter(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:m:step, 0:m:step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        maps[:, half:m:step, half:m:step] = jitter(square)
        centres = maps[:, half:m:step, half:m:step]
        corners = maps[:, 0:m:step, 0:m:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:m:step, half:m:step] = jitter(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:m:step, 0:m:step] = jitter(top)
        step, wibble = half, wibble / decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


# --- noise -------------------------------------------------------------------------------


def gaussian_noise(images, severity: int, rng) -> np.ndarray:
    """Adds ``N(0, c^2)`` noise, ``c`` = 0.04..0.10, then clips."""
    x, c, rng = _prepare(images, severity, rng, "gaussian_noise")
    return _out(x + rng.normal(0.0, c, x.shape))


def shot_noise(images, severity: int, rng) -> np.ndarray:
    """Poisson noise: ``Poisson(c x) / c``, ``c`` = 500..50 photons (variance ``x / c``)."""
    x, c, rng = _prepare(images, severity, rng, "shot_noise")
    return _out(rng.poisson(x * c) / c)


def impulse_noise(images, severity: int, rng) -> np.ndarray:
    """Salt and pepper: each value (per channel) becomes 1 or 0 (even odds) with
    probability ``c`` = 0.01..0.07 (scikit-image's ``random_noise(mode='s&p')``)."""
    x, c, rng = _prepare(images, severity, rng, "impulse_noise")
    flip, salt = rng.random(x.shape) < c, rng.random(x.shape) < 0.5
    return _out(np.where(flip, salt.astype(np.float64), x))


# --- blur --------------------------------------------------------------------------------


def defocus_blur(images, severity: int, rng) -> np.ndarray:
    """Convolves with a disk of radius ``c[0]`` antialiased by a 3x3 Gaussian of std
    ``c[1]`` (borders reflected, as OpenCV's default)."""
    x, (radius, alias), _ = _prepare(images, severity, rng, "defocus_blur")
    half = max(8, math.ceil(radius))
    grid = np.arange(-half, half + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float64)
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2.0 * alias**2))
    kernel = ndimage.correlate(disk / disk.sum(), np.outer(g, g) / g.sum() ** 2, mode="constant")
    keep = np.flatnonzero(kernel.sum(axis=0) > 1e-12)
    kernel = kernel[keep[0] : keep[-1] + 1, keep[0] : keep[-1] + 1]
    return _out(ndimage.correlate(x, kernel[None, :, :, None], mode="mirror"))


def glass_blur(images, severity: int, rng) -> np.ndarray:
    """Gaussian blur (std ``c[0]``), then ``c[2]`` passes in which each pixel
    ``(r, col)``, ``c[1] < r, col <= side - c[1]``, takes the value of the pixel at a random
    offset in ``[-c[1], c[1])^2`` (up/left only for ``c[1] = 1``), then the same blur.

    The reference means to swap the two pixels, but ``x[h, w], x[h', w'] = x[h', w'],
    x[h, w]`` on an RGB array swaps NumPy views, which copies instead; scanning from the
    bottom right, the source pixel is still unvisited, so each pixel gets an original
    neighbour's value. CIFAR-10-C was made that way, and so are these (one vectorised
    gather per pass; no rounding to uint8 between steps).
    """
    x, (sigma, delta, passes), rng = _prepare(images, severity, rng, "glass_blur")
    n, h, w, _ = x.shape
    blur = (0, sigma, sigma, 0)
    x = ndimage.gaussian_filter(x, blur, mode="nearest", truncate=4.0)
    rows, cols = np.arange(delta + 1, h - delta + 1), np.arange(delta + 1, w - delta + 1)
    idx = np.arange(n)[:, None, None]
    for _ in range(passes):
        dy, dx = rng.integers(-delta, delta, size=(2, n, len(rows), len(cols)))
        source = x[idx, rows[:, None] + dy, cols[None, :] + dx]
        x[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = source
    return _out(ndimage.gaussian_filter(x, blur, mode="nearest", truncate=4.0))


def motion_blur(images, severity: int, rng) -> np.ndarray:
    """One-sided line blur (radius ``c[0]``, Gaussian weights of std ``c[1]``) at a random
    angle in ``[-45, 45)`` degrees per image."""
    x, (radius, sigma), rng = _prepare(images, severity, rng, "motion_blur")
    return _out(_line_blur(x, radius, sigma, rng.uniform(-45, 45, len(x))))


def zoom_blur(images, severity: int, rng) -> np.ndarray:
    """The mean of the image and its zooms by ``1, 1.01, ..., c - 0.01`` about the centre."""
    x, c, _ = _prepare(images, severity, rng, "zoom_blur")
    factors = np.arange(1, c, 0.01)
    return _out((x + sum(_zoom(x, f) for f in factors)) / (len(factors) + 1))


# --- weather -----------------------------------------------------------------------------


def snow(images, severity: int, rng) -> np.ndarray:
    """A thresholded, zoomed Gaussian field of flakes, motion-blurred at an angle in
    ``[-135, -45)``, added twice (and rotated 180 degrees) to the image brightened
    towards ``1.5 grey + 0.5``."""
    x, c, rng = _prepare(images, severity, rng, "snow")
    loc, scale, zoom, threshold, radius, sigma, weight = c
    layer = _zoom(rng.normal(loc, scale, x.shape[:3] + (1,)), zoom)
    layer = np.clip(np.where(layer < threshold, 0.0, layer), 0.0, 1.0)
    layer = _line_blur(layer, radius, sigma, rng.uniform(-135, -45, len(x)))
    x = weight * x + (1 - weight) * np.maximum(x, _grey(x) * 1.5 + 0.5)
    return _out(x + layer + np.rot90(layer, 2, axes=(1, 2)))


def frost_texture(n: int, h: int, w: int, channels: int, rng) -> np.ndarray:
    """``n`` procedural frost layers ``(n, h, w, channels)`` in ``[0, 1]``: soft fractal
    haze plus thin bright veins (ridges of a second fractal), bluish white on RGB; the
    stand-in for the reference's frost photographs."""
    size = max(h, w)
    haze = plasma_fractal(n, size, 2.0, rng)
    veins = (1.0 - np.abs(2.0 * plasma_fractal(n, size, 1.6, rng) - 1.0)) ** 6
    layer = np.clip(0.25 + 0.35 * haze + 0.6 * veins, 0.0, 1.0)[:, :h, :w, None]
    tint = np.array([0.85, 0.93, 1.0]) if channels == 3 else np.ones(1)
    return layer * tint


def frost(images, severity: int, rng) -> np.ndarray:
    """``c[0] x + c[1] frost`` with a procedural frost layer (:func:`frost_texture`)."""
    x, (a, b), rng = _prepare(images, severity, rng, "frost")
    return _out(a * x + b * frost_texture(len(x), *x.shape[1:], rng))


def fog(images, severity: int, rng) -> np.ndarray:
    """Adds ``c[0]`` times a plasma fractal (jitter decay ``c[1]``), rescaled so the
    image's maximum is kept when the fog is at most 1."""
    x, (amount, decay), rng = _prepare(images, severity, rng, "fog")
    n, h, w, _ = x.shape
    top = x.max(axis=(1, 2, 3), keepdims=True)
    fog_map = plasma_fractal(n, max(h, w), decay, rng)[:, :h, :w, None]
    return _out((x + amount * fog_map) * top / (top + amount))


def brightness(images, severity: int, rng) -> np.ndarray:
    """Adds ``c`` to the HSV value (clipped at 1) at constant hue and saturation: RGB is
    scaled by ``V'/V``; grey images get ``x + c``."""
    x, c, _ = _prepare(images, severity, rng, "brightness")
    value = x.max(axis=-1, keepdims=True)
    new = np.minimum(value + c, 1.0)
    return _out(np.where(value > 0, x * new / np.maximum(value, 1e-12), new))


# --- digital -----------------------------------------------------------------------------


def contrast(images, severity: int, rng) -> np.ndarray:
    """Scales deviations from each image's per-channel mean by ``c`` = 0.75..0.15."""
    x, c, _ = _prepare(images, severity, rng, "contrast")
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _out((x - mean) * c + mean)


def elastic_transform(images, severity: int, rng) -> np.ndarray:
    """A random affine map (three points around the centre jittered by up to ``c[2] s``,
    ``s`` the side), then a smooth random displacement field (uniform noise blurred with
    std ``c[1] s``, times ``c[0] s``); bilinear, reflected borders."""
    x, (alpha, sigma, jitter), rng = _prepare(images, severity, rng, "elastic_transform")
    n, h, w, _ = x.shape
    side = float(min(h, w))
    centre, half = np.array([w // 2, h // 2], float), float(min(h, w) // 3)
    src = centre + np.array([[half, half], [half, -half], [-half, -half]])  # (x, y)
    dst = src + rng.uniform(-jitter * side, jitter * side, (n, 3, 2))
    # Affine A, t with dst = A src + t; output pixel p samples the input at A^-1 (p - t).
    design = np.concatenate([src, np.ones((3, 1))], axis=1)
    sol = np.linalg.solve(design[None], dst)  # (n, 3, 2): rows A^T then t
    a_inv, t = np.linalg.inv(np.swapaxes(sol[:, :2], 1, 2)), sol[:, 2]
    yy, xx = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    p = np.stack([xx, yy], -1)[None] - t[:, None, None]
    q = np.einsum("nij,nhwj->nhwi", a_inv, p)
    x = _sample(x, q[..., 1], q[..., 0], "mirror")
    field = rng.uniform(-1, 1, (2, n, h, w))
    field = ndimage.gaussian_filter(field, (0, 0, sigma * side, sigma * side), mode="reflect",
                                    truncate=3.0) * (alpha * side)  # fmt: skip
    return _out(_sample(x, yy + field[1], xx + field[0], "reflect"))


def _pixelate_matrix(size: int, factor: float) -> np.ndarray:
    """``(size, size)``: area-average to ``int(size*factor)`` pixels, then nearest back."""
    m = max(int(size * factor), 1)
    edges = np.arange(m + 1) * size / m
    j = np.arange(size)
    down = np.clip(
        np.minimum(j[None] + 1, edges[1:, None]) - np.maximum(j[None], edges[:-1, None]), 0, None
    ) / (size / m)
    up = np.zeros((size, m))
    up[j, np.minimum(((j + 0.5) * m / size).astype(int), m - 1)] = 1.0
    return up @ down


def pixelate(images, severity: int, rng) -> np.ndarray:
    """Box-downsamples each side to ``int(side * c)`` pixels and blows them up again."""
    x, c, _ = _prepare(images, severity, rng, "pixelate")
    rows, cols = _pixelate_matrix(x.shape[1], c), _pixelate_matrix(x.shape[2], c)
    return _out(_separable(x, rows, cols))


def jpeg_compression(images, severity: int, rng) -> np.ndarray:
    """Encodes each image as 8-bit JPEG at quality ``c`` = 80..40 (PIL) and decodes it."""
    from PIL import Image

    x, quality, _ = _prepare(images, severity, rng, "jpeg_compression")
    pixels = np.rint(x * 255).astype(np.uint8)
    out = np.empty_like(x)
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            buffer, "JPEG", quality=quality
        )
        out[i] = np.asarray(Image.open(buffer)).reshape(image.shape) / 255.0
    return _out(out)


CORRUPTIONS = {name: globals()[name] for name in NAMES}


def corrupt(images, name: str, severity: int, rng) -> np.ndarray:
    """Applies corruption ``name`` (one of :data:`NAMES`) at ``severity`` 1..5.

    Raises:
      ValueError: for an unknown name (listing the valid ones), bad images or severity.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}; valid corruptions: {list(NAMES)}.")
    return CORRUPTIONS[name](images, severity, rng)

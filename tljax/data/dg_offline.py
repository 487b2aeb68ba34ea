"""Domain sets built offline from real data: ``rotated_digits``, ``colored_fashion`` and
``digits_styles`` (see :mod:`tljax.data.domain_sets`).

Every random choice draws from ``np.random.default_rng([data_seed, ...])``, so a
``data_seed`` rebuilds the same arrays bit for bit. Each domain is made from its own
disjoint subset of the images (as DomainBed's ``MultipleEnvironmentMNIST``: a seeded
permutation, subset ``i`` = ``perm[i::k]``), then split into DomainBed's 80% "in"
(``train``) and 20% "out" (``test``) splits (:func:`tljax.data.domain_sets.in_out_split`).

* ``rotated_digits`` -- the RotatedMNIST analogue. The 1,797 UCI digits (scikit-learn,
  8x8 upsampled to ``image_size``, default 28, as :mod:`tljax.data.digits`) in 6 subsets
  of 299-300 images, rotated counter-clockwise by 0, 15, 30, 45, 60 and 75 degrees
  (bilinear, black fill; DomainBed rotates MNIST bicubically). Domains ``"0"``, ``"15"``,
  ... (DomainBed's names); 10 classes; ``(28, 28, 1)``.
* ``colored_fashion`` -- DomainBed's ColoredMNIST recipe on Fashion-MNIST. The 70,000
  train+test images in 3 subsets of 23,333-23,334; binary label ``y = class < 5``
  (T-shirt/top, Trouser, Pullover, Dress, Coat -> 1; Sandal, Shirt, Sneaker, Bag, Ankle
  boot -> 0), flipped with probability 0.25; colour ``c = y`` flipped with probability
  ``e`` = 0.1, 0.2, 0.9; the image goes to channel ``c`` of 2 (the other is zero).
  Domains ``"+90%"``, ``"+80%"``, ``"-90%"`` (colour-label agreement 0.9, 0.8, 0.1);
  2 classes; ``(14, 14, 2)`` by default: every second pixel, as in the original IRM code
  (``image_size=28`` keeps the full resolution, as DomainBed's current code does).
  ``per_domain`` keeps a seeded random subset of that many images per environment.
* ``digits_styles`` -- the UCI digits in 4 subsets of 449-450 images, each drawn in one
  style: ``plain`` (grey to RGB), ``m`` (the MNIST-M blend with scikit-image photos,
  :func:`tljax.data.shifts.mnist_m`), ``edges`` (Sobel gradient magnitude, scaled to max 1
  per image), ``thick`` (grey dilation, 3x3 maximum filter); ``inverted`` (``1 - x``) and
  ``noisy`` (Gaussian noise, std 0.3, clipped) are further styles for the ``styles``
  option. 10 classes; ``(28, 28, 3)``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import scipy.ndimage

from tljax.data.domain_sets import (
    HOLDOUT_FRACTION,
    DomainSet,
    check_holdout_fraction,
    disjoint_subsets,
    split_domain,
)
from tljax.data.idx import load_fashion_mnist
from tljax.data.shifts import gaussian_noise, invert, mnist_m, resize, rotate, to_rgb

ROTATIONS = (0, 15, 30, 45, 60, 75)  # DomainBed's RotatedMNIST environments
COLOR_FLIPS = (0.1, 0.2, 0.9)  # DomainBed's ColoredMNIST e per environment
LABEL_NOISE = 0.25
DIGITS_SIZE = 28
COLORED_SIZE = 14


@functools.cache
def uci_digits(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 UCI digits: float32 ``(n, s, s, 1)`` in ``[0, 1]`` and int32 labels.

    Scaled by 1/16 and resized with :func:`tljax.data.shifts.resize`, as
    :func:`tljax.data.digits.load_uci_digits` does; in the dataset's order. Read-only.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[..., None] / np.float32(16.0)
    if image_size != images.shape[1]:
        images = resize(images, int(image_size))
    labels = bunch.target.astype(np.int32)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _size(image_size: int | None, default: int) -> int:
    return default if image_size is None else int(image_size)


def angle_name(degrees: float) -> str:
    """A rotation domain's name: ``15 -> "15"``, ``22.5 -> "22.5"``."""
    return f"{float(degrees):g}"


def rotated_digits(
    *,
    data_seed: int = 0,
    image_size: int | None = None,
    angles: Sequence[float] = ROTATIONS,
    holdout_fraction: float = HOLDOUT_FRACTION,
) -> DomainSet:
    """The UCI digits in disjoint subsets, one per rotation angle (RotatedMNIST analogue).

    Args:
      data_seed: seed of the subsets and the in/out splits.
      image_size: side of the square images (default 28).
      angles: counter-clockwise rotations in degrees, one domain each (named by
        :func:`angle_name`); default DomainBed's 0, 15, ..., 75.
      holdout_fraction: fraction of each domain in its "out" (test) split.

    Returns:
      The set; images float32 ``(n, s, s, 1)`` in ``[0, 1]``, 10 classes.

    Raises:
      ValueError: for fewer than two, repeated or non-finite angles, or a bad fraction.
    """
    angles = tuple(angles)
    if len(angles) < 2 or not all(
        isinstance(a, (int, float, np.integer, np.floating)) and math.isfinite(a) for a in angles
    ):
        raise ValueError(f"angles must be at least two finite numbers, got {angles!r}.")
    names = [angle_name(a) for a in angles]
    if len(set(names)) != len(names):
        raise ValueError(f"angles must differ from each other, got {angles!r}.")
    holdout_fraction = check_holdout_fraction(holdout_fraction)
    images, labels = uci_digits(_size(image_size, DIGITS_SIZE))
    subsets = disjoint_subsets(len(labels), len(angles), seed=[data_seed, 1])
    domains = tuple(
        split_domain(
            name,
            rotate(images[idx], float(angle)),
            labels[idx],
            holdout_fraction=holdout_fraction,
            seed=[data_seed, 2, i],
        )
        for i, (name, angle, idx) in enumerate(zip(names, angles, subsets, strict=True))
    )
    return DomainSet("rotated_digits", domains, num_classes=10)


def environment_name(flip: float) -> str:
    """DomainBed's name of a ColoredMNIST environment: ``0.1 -> "+90%"``, ``0.9 -> "-90%"``
    (the sign says whether colour and label mostly agree)."""
    if flip < 0.5:
        return f"+{round(100 * (1 - flip), 6):g}%"
    return f"-{round(100 * flip, 6):g}%"


def binarize(classes: np.ndarray) -> np.ndarray:
    """ColoredMNIST's binary label before noise: 1 for classes 0-4, 0 for 5-9 (int32)."""
    return (np.asarray(classes) < 5).astype(np.int32)


def color_environment(
    images: np.ndarray,
    classes: np.ndarray,
    flip: float,
    *,
    label_noise: float = LABEL_NOISE,
    seed: int | Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """One ColoredMNIST environment (Arjovsky et al. 2019; DomainBed's ``color_dataset``).

    With ``rng = np.random.default_rng(seed)``: ``y = binarize(classes) XOR
    (rng.random(n) < label_noise)``, ``color = y XOR (rng.random(n) < flip)``; the image
    is put in channel ``color`` of two, the other channel is zero.

    Args:
      images: float ``(n, h, w)`` or ``(n, h, w, 1)`` in ``[0, 1]``.
      classes: the original labels 0..9, ``(n,)``.
      flip: probability ``e`` that the colour disagrees with ``y``.
      label_noise: probability that ``y`` disagrees with the binarised class.
      seed: seed of ``np.random.default_rng``.

    Returns:
      ``(x, y)``: float32 ``(n, h, w, 2)`` and int32 ``(n,)`` in ``{0, 1}``.
    """
    for value, what in ((flip, "flip"), (label_noise, "label_noise")):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}.")
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    n = len(images)
    rng = np.random.default_rng(seed)
    y = binarize(classes) ^ (rng.random(n) < label_noise)
    color = y ^ (rng.random(n) < flip)
    x = np.zeros((*images.shape, 2), np.float32)
    x[np.arange(n), ..., color] = images
    return x, y.astype(np.int32)


def colored_fashion(
    *,
    data_seed: int = 0,
    image_size: int | None = None,
    per_domain: int | None = None,
    directory: str | os.PathLike | None = None,
    flips: Sequence[float] = COLOR_FLIPS,
    label_noise: float = LABEL_NOISE,
    holdout_fraction: float = HOLDOUT_FRACTION,
) -> DomainSet:
    """Colored Fashion-MNIST: DomainBed's ColoredMNIST with Fashion-MNIST's 70,000 images.

    Args:
      data_seed: seed of the subsets, the label and colour flips and the in/out splits.
      image_size: 14 (default: every second pixel, as the IRM code), 28 (full size, as
        DomainBed's code) or any other side (antialiased resize of the 28x28 images).
      per_domain: keep a seeded random subset of this many images per environment
        (``None``: all, 23,333-23,334).
      directory: folder of the Fashion-MNIST IDX files (default
        ``/usr/share/datasets/fashion-mnist``).
      flips: colour flip probability ``e`` of each environment, one domain each
        (named by :func:`environment_name`); default DomainBed's 0.1, 0.2, 0.9.
      label_noise: label flip probability (0.25).
      holdout_fraction: fraction of each domain in its "out" (test) split.

    Returns:
      The set; images float32 ``(n, s, s, 2)`` in ``[0, 1]``, 2 classes.

    Raises:
      FileNotFoundError: if Fashion-MNIST is not installed (saying how to install it).
      ValueError: for bad flips, noise, sizes or fraction.
    """
    flips = tuple(flips)
    if len(flips) < 2 or not all(
        isinstance(e, (int, float, np.integer, np.floating)) and 0.0 <= e <= 1.0 for e in flips
    ):
        raise ValueError(f"flips must be at least two probabilities in [0, 1], got {flips!r}.")
    names = [environment_name(e) for e in flips]
    if len(set(names)) != len(names):
        raise ValueError(f"flips must give distinct environments, got {flips!r} -> {names}.")
    if per_domain is not None and (
        isinstance(per_domain, bool)
        or not isinstance(per_domain, (int, np.integer))
        or per_domain < 1
    ):
        raise ValueError(f"per_domain must be a positive integer or None, got {per_domain!r}.")
    holdout_fraction = check_holdout_fraction(holdout_fraction)
    size = _size(image_size, COLORED_SIZE)
    train, test = load_fashion_mnist(directory)
    images = np.concatenate([train.x[..., 0], test.x[..., 0]])
    classes = np.concatenate([train.y, test.y])
    subsets = disjoint_subsets(len(classes), len(flips), seed=[data_seed, 1])
    if per_domain is not None:
        # Each subset is a sorted random subset; a seeded draw from it stays random.
        subsets = [
            np.sort(np.random.default_rng([data_seed, 3, i]).permutation(idx)[:per_domain])
            for i, idx in enumerate(subsets)
        ]
    domains = []
    for i, (name, flip, idx) in enumerate(zip(names, flips, subsets, strict=True)):
        x = images[idx]
        if size == 14:
            x = x[:, ::2, ::2]
        elif size != 28:
            x = resize(x, size)
        x, y = color_environment(
            x, classes[idx], float(flip), label_noise=label_noise, seed=[data_seed, 2, i]
        )
        domains.append(
            split_domain(name, x, y, holdout_fraction=holdout_fraction, seed=[data_seed, 4, i])
        )
    return DomainSet("colored_fashion", tuple(domains), num_classes=2)


def sobel_edges(images: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of grey images (zero outside), scaled to max 1 per image.

    Args:
      images: float ``(n, h, w, 1)`` in ``[0, 1]``.

    Returns:
      float32 ``(n, h, w, 1)`` in ``[0, 1]`` (an image without gradient stays 0).
    """
    x = np.asarray(images, np.float64)

    def sobel(derivative_axis: int, smoothing_axis: int) -> np.ndarray:
        # scipy.ndimage.sobel would also smooth across the batch and channel axes.
        d = scipy.ndimage.correlate1d(x, [-1.0, 0.0, 1.0], axis=derivative_axis, mode="constant")
        return scipy.ndimage.correlate1d(d, [1.0, 2.0, 1.0], axis=smoothing_axis, mode="constant")

    gy, gx = sobel(1, 2), sobel(2, 1)
    magnitude = np.hypot(gx, gy)
    peak = magnitude.max(axis=(1, 2, 3), keepdims=True)
    out = np.divide(magnitude, peak, out=np.zeros_like(magnitude), where=peak > 0)
    return out.astype(np.float32)


def dilate(images: np.ndarray, size: int = 3) -> np.ndarray:
    """Grey dilation: the maximum over a ``size`` x ``size`` window (zero outside)."""
    x = np.asarray(images, np.float32)
    return scipy.ndimage.grey_dilation(x, size=(1, size, size, 1), mode="constant", cval=0.0)


# style name -> fn(grey images (n, s, s, 1), seed) -> RGB images (n, s, s, 3)
STYLES: dict[str, Callable[[np.ndarray, list[int]], np.ndarray]] = {
    "plain": lambda x, seed: to_rgb(x),
    "m": lambda x, seed: mnist_m(x, seed=seed),
    "edges": lambda x, seed: to_rgb(sobel_edges(x)),
    "thick": lambda x, seed: to_rgb(dilate(x, 3)),
    "inverted": lambda x, seed: to_rgb(invert(x)),
    "noisy": lambda x, seed: to_rgb(gaussian_noise(x, 0.3, seed=seed)),
}
DEFAULT_STYLES = ("plain", "m", "edges", "thick")


def digits_styles(
    *,
    data_seed: int = 0,
    image_size: int | None = None,
    styles: Sequence[str] = DEFAULT_STYLES,
    holdout_fraction: float = HOLDOUT_FRACTION,
) -> DomainSet:
    """The UCI digits in disjoint subsets, each drawn in one style (see the module doc).

    Args:
      data_seed: seed of the subsets, the random styles (``m``, ``noisy``) and the
        in/out splits.
      image_size: side of the square images (default 28).
      styles: names from :data:`STYLES`, one domain each (default ``plain``, ``m``,
        ``edges``, ``thick``).
      holdout_fraction: fraction of each domain in its "out" (test) split.

    Returns:
      The set; images float32 ``(n, s, s, 3)`` in ``[0, 1]``, 10 classes.

    Raises:
      ValueError: for fewer than two, repeated or unknown styles, or a bad fraction.
    """
    styles = (styles,) if isinstance(styles, str) else tuple(styles)
    unknown = [s for s in styles if s not in STYLES]
    if unknown or len(styles) < 2 or len(set(styles)) != len(styles):
        raise ValueError(
            f"styles must be at least two distinct names of {sorted(STYLES)}, got {styles!r}."
        )
    holdout_fraction = check_holdout_fraction(holdout_fraction)
    images, labels = uci_digits(_size(image_size, DIGITS_SIZE))
    subsets = disjoint_subsets(len(labels), len(styles), seed=[data_seed, 1])
    domains = tuple(
        split_domain(
            style,
            STYLES[style](images[idx], [data_seed, 3, i]),
            labels[idx],
            holdout_fraction=holdout_fraction,
            seed=[data_seed, 2, i],
        )
        for i, (style, idx) in enumerate(zip(styles, subsets, strict=True))
    )
    return DomainSet("digits_styles", domains, num_classes=10)

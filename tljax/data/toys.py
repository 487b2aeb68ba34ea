"""The DANN paper's toy problem: two inter-twinning moons, target rotated.

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016, section 5.1.1:
the source is a two-moons sample and the target is the same sample rotated about the
data's centre (35 degrees in the paper; ``angle`` here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tljax.data.core import Domain, Split, Task

# Mean of the noiseless two-moons distribution: the centre the target is rotated about.
MOONS_CENTRE: tuple[float, float] = (0.5, 0.25)


def two_moons(
    n: int, *, noise: float = 0.1, seed: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Samples two inter-twinning half circles with Gaussian noise.

    Class 0 is the upper moon ``(cos t, sin t)``, class 1 the lower moon
    ``(1 - cos t, 0.5 - sin t)``, ``t ~ U[0, pi]``; classes have ``ceil(n/2)`` and
    ``floor(n/2)`` points and are shuffled together.

    Args:
      n: number of points, ``>= 1``.
      noise: standard deviation of the Gaussian noise added to each coordinate, ``>= 0``.
      seed: seed of ``np.random.default_rng`` (an int or a list of ints).

    Returns:
      ``(x, y)``: float32 ``(n, 2)`` points and int32 ``(n,)`` labels in ``{0, 1}``.

    Raises:
      ValueError: if ``n < 1`` or ``noise`` is negative or not finite.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"two_moons: n must be a positive integer, got {n!r}.")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"two_moons: noise must be a finite number >= 0, got {noise!r}.")
    rng = np.random.default_rng(seed)
    n0 = (n + 1) // 2
    t = rng.uniform(0.0, math.pi, size=n)
    upper = np.stack([np.cos(t[:n0]), np.sin(t[:n0])], axis=1)
    lower = np.stack([1.0 - np.cos(t[n0:]), 0.5 - np.sin(t[n0:])], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0.0, noise, size=(n, 2))
    y = np.concatenate([np.zeros(n0, np.int32), np.ones(n - n0, np.int32)])
    perm = rng.permutation(n)
    return x[perm].astype(np.float32), y[perm]


def rotate_points(
    x: np.ndarray, degrees: float, centre: tuple[float, float] = MOONS_CENTRE
) -> np.ndarray:
    """Rotates 2-D points counter-clockwise by ``degrees`` about ``centre``.

    Args:
      x: ``(n, 2)`` points.
      degrees: rotation angle in degrees.
      centre: the fixed point of the rotation.

    Returns:
      float32 ``(n, 2)``.

    Raises:
      ValueError: if ``x`` is not ``(n, 2)``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"rotate_points: x must have shape (n, 2), got {x.shape}.")
    theta = math.radians(degrees)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    c = np.asarray(centre, np.float64)
    return ((x.astype(np.float64) - c) @ rot.T + c).astype(np.float32)


def two_moons_task(
    *,
    n_train: int = 300,
    n_test: int = 1000,
    angle: float = 30.0,
    noise: float = 0.1,
    seed: int = 0,
) -> Task:
    """Builds the DANN toy task ``moons -> moons_rot``.

    The source train and test splits are independent :func:`two_moons` samples (seeds
    derived from ``seed``); each target split is its source split rotated by ``angle``
    degrees about :data:`MOONS_CENTRE`, with the same labels, as in the paper.

    Args:
      n_train: points per train split.
      n_test: points per test split.
      angle: rotation of the target in degrees (counter-clockwise).
      noise: see :func:`two_moons`.
      seed: data seed, ``>= 0``.

    Returns:
      A 2-class :class:`Task` with float32 ``(n, 2)`` inputs.

    Raises:
      ValueError: on a bad size, noise or seed.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"two_moons_task: seed must be a non-negative integer, got {seed!r}.")
    train = Split(*two_moons(n_train, noise=noise, seed=[seed, 1]))
    test = Split(*two_moons(n_test, noise=noise, seed=[seed, 2]))
    target = Domain(
        "moons_rot",
        Split(rotate_points(train.x, angle), train.y.copy()),
        Split(rotate_points(test.x, angle), test.y.copy()),
    )
    return Task("moons", Domain("moons", train, test), target, num_classes=2)

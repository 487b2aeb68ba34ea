r"""Seeded 2-D domain shifts of three textbook kinds, with ``K >= 2`` classes.

Tasks ``shift2d/covariate``, ``shift2d/label`` and ``shift2d/conditional`` (registered in
:mod:`tljax.data.tasks`; ``get_task("shift2d/label", data_seed=0, num_classes=3)``). Each
shift changes exactly one factor of the joint ``p(x, y)`` and keeps the other fixed:

* **Covariate shift** (``p(y|x)`` fixed, ``p(x)`` moves). Labels are a fixed function of
  the point, a *pinwheel*: ``y = floor(K · ((atan2(x₂, x₁) + twist·|x|) mod 2π) / 2π)``
  (``K`` spiral arms that turn by ``twist`` radians per unit radius), in both domains, so
  ``p(y|x)`` is the same point mass everywhere. Source ``x ~ N(0, I)``; target
  ``x ~ N((offset, 0), I)`` (``offset = 2`` by default). (With ``label_noise = ε`` each
  label is replaced with probability ``ε`` by a uniform class, in both domains alike:
  ``p(y|x)`` stays fixed.)
* **Label shift** (``p(y)`` changes, ``p(x|y)`` fixed). Class ``k`` is
  ``N(μ_k, σ² I)`` in both domains, ``μ_k = r (cos 2πk/K, sin 2πk/K)`` with ``r = 1.5``
  and ``σ = noise``. Source ``p(y)`` is uniform; target ``p(y = k) ∝ imbalance^(k/(K−1))``
  (class 0 the most frequent, class ``K−1`` ``imbalance`` times as frequent). Class counts
  are exact (largest-remainder rounding), then shuffled.
* **Conditional shift** (``p(x|y)`` changes, ``p(y)`` fixed). Source as in label shift
  with uniform ``p(y)``; target class ``k`` is ``N(R_θ μ_k, σ² I)``: every class mean is
  rotated by ``angle`` degrees about the origin (a different move per class), ``p(y)``
  uniform in both domains.

Defaults (``K = 3``) make a source-only MLP clearly worse on the target than on the
source but far above chance, the regime where adaptation should help and where a collapsed
seed shows (``docs/seeds.md``, "Seeds that collapse on 2-D shifts").

Train and test splits of each domain are independent samples (seeds derived from
``data_seed``); all arrays are float32 ``(n, 2)`` / int32 ``(n,)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tljax.data.core import Domain, Split, Task

SHIFTS = ("covariate", "label", "conditional")
# Options every shift2d task accepts (each shift uses its own subset; see OPTIONS).
ALL_OPTIONS = (
    "num_classes",
    "n_train",
    "n_test",
    "noise",
    "offset",
    "twist",
    "label_noise",
    "imbalance",
    "angle",
)
COMMON = ("num_classes", "n_train", "n_test")
OPTIONS = {
    "covariate": (*COMMON, "offset", "twist", "label_noise"),
    "label": (*COMMON, "noise", "imbalance"),
    "conditional": (*COMMON, "noise", "angle"),
}
DEFAULTS = dict(
    num_classes=3,
    n_train=1000,
    n_test=2000,
    noise=0.6,
    offset=2.0,
    twist=1.0,
    label_noise=0.0,
    imbalance=0.2,
    angle=35.0,
)
RADIUS = 1.5  # distance of the class means from the origin (label, conditional)


def pinwheel_labels(x: np.ndarray, num_classes: int, twist: float) -> np.ndarray:
    """The covariate shift's labelling function ``y(x)`` (see the module docstring)."""
    x = np.asarray(x, np.float64)
    phase = np.arctan2(x[:, 1], x[:, 0]) + twist * np.hypot(x[:, 0], x[:, 1])
    y = np.floor(num_classes * np.mod(phase, 2 * math.pi) / (2 * math.pi)).astype(np.int32)
    return np.minimum(y, num_classes - 1)  # guards mod's rounding to exactly 2π


def class_means(num_classes: int, angle: float = 0.0) -> np.ndarray:
    """``(K, 2)`` class means on the circle of radius :data:`RADIUS`, rotated by ``angle``°."""
    t = 2 * math.pi * np.arange(num_classes) / num_classes + math.radians(angle)
    return RADIUS * np.stack([np.cos(t), np.sin(t)], axis=1)


def class_counts(n: int, priors: np.ndarray) -> np.ndarray:
    """Exact per-class counts summing to ``n`` (largest remainder of ``n · priors``)."""
    raw = n * np.asarray(priors, np.float64) / np.sum(priors)
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def target_priors(num_classes: int, imbalance: float) -> np.ndarray:
    """Label shift's target ``p(y = k) ∝ imbalance^(k/(K−1))``, normalised."""
    w = imbalance ** (np.arange(num_classes) / (num_classes - 1))
    return w / w.sum()


def _blobs(n, priors, means, noise, rng):
    counts = class_counts(n, priors)
    y = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    x = means[y] + rng.normal(0.0, noise, size=(n, 2))
    perm = rng.permutation(n)
    return Split(x[perm].astype(np.float32), y[perm])


def _covariate(n, centre, o, rng):
    x = rng.normal(0.0, 1.0, size=(n, 2)) + np.asarray(centre)
    y = pinwheel_labels(x, o["num_classes"], o["twist"])
    if o["label_noise"] > 0:
        flip = rng.random(n) < o["label_noise"]
        y = np.where(flip, rng.integers(0, o["num_classes"], n), y).astype(np.int32)
    return Split(x.astype(np.float32), y)


def sample(shift: str, domain: str, n: int, *, seed, **options) -> Split:
    """``n`` points of one domain (``"source"`` or ``"target"``) of ``shift``.

    Args:
      shift: one of :data:`SHIFTS`.
      domain: ``"source"`` or ``"target"``.
      n: number of points.
      seed: seed of ``np.random.default_rng`` (an int or a list of ints).
      **options: see :data:`DEFAULTS`; those the shift does not use are ignored here.

    Returns:
      A :class:`Split` of float32 ``(n, 2)`` points and int32 labels.
    """
    o = {**DEFAULTS, **options}
    rng = np.random.default_rng(seed)
    k = o["num_classes"]
    target = domain == "target"
    if shift == "covariate":
        return _covariate(n, (o["offset"], 0.0) if target else (0.0, 0.0), o, rng)
    uniform = np.full(k, 1.0 / k)
    if shift == "label":
        priors = target_priors(k, o["imbalance"]) if target else uniform
        return _blobs(n, priors, class_means(k), o["noise"], rng)
    return _blobs(n, uniform, class_means(k, o["angle"] if target else 0.0), o["noise"], rng)


def _check(shift: str, options: dict) -> dict:
    if shift not in SHIFTS:
        raise ValueError(f"shift2d: unknown shift {shift!r}; valid: {list(SHIFTS)}.")
    unused = sorted(set(options) - set(OPTIONS[shift]))
    if unused:
        raise ValueError(
            f"shift2d/{shift} does not use option(s) {unused}; its options: {list(OPTIONS[shift])}."
        )
    o = {**DEFAULTS, **options}
    k = o["num_classes"]
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"shift2d: num_classes must be an integer >= 2, got {k!r}.")
    for key in ("n_train", "n_test"):
        if not isinstance(o[key], (int, np.integer)) or o[key] < k:
            raise ValueError(f"shift2d: {key} must be an integer >= num_classes, got {o[key]!r}.")
    for key in ("noise", "offset", "twist", "angle", "imbalance", "label_noise"):
        if not math.isfinite(float(o[key])):
            raise ValueError(f"shift2d: {key} must be finite, got {o[key]!r}.")
    if not o["noise"] > 0:
        raise ValueError(f"shift2d: noise must be > 0, got {o['noise']!r}.")
    if not 0 < o["imbalance"]:
        raise ValueError(f"shift2d: imbalance must be > 0, got {o['imbalance']!r}.")
    if not 0 <= o["label_noise"] <= 1:
        raise ValueError(f"shift2d: label_noise must be in [0, 1], got {o['label_noise']!r}.")
    return {key: options[key] for key in sorted(options)}


def shift2d_task(shift: str, *, data_seed: int = 0, **options) -> Task:
    """Builds the task ``shift2d/<shift>`` (cached; arrays read-only).

    Args:
      shift: ``"covariate"``, ``"label"`` or ``"conditional"``.
      data_seed: seed of every sample, ``>= 0``; source/target train/test use the seeds
        ``[data_seed, 0..3]``.
      **options: ``num_classes`` (default 3), ``n_train`` (1000), ``n_test`` (2000) and the
        shift's own: covariate ``offset`` (2.0), ``twist`` (1.0), ``label_noise`` (0);
        label ``noise`` (σ, 0.6), ``imbalance`` (0.2); conditional ``noise``, ``angle``
        (35°).

    Raises:
      ValueError: on an unknown shift, an option the shift does not use, or a bad value.
    """
    o = _check(shift, options)
    if not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ValueError(f"shift2d: data_seed must be a non-negative integer, got {data_seed!r}.")
    return _build(shift, int(data_seed), tuple(o.items()))


@functools.lru_cache(maxsize=16)
def _build(shift: str, data_seed: int, options: tuple) -> Task:
    o = {**DEFAULTS, **dict(options)}
    splits = [
        sample(shift, d, o[n], seed=[data_seed, i], **o)
        for i, (d, n) in enumerate(
            [
                ("source", "n_train"),
                ("source", "n_test"),
                ("target", "n_train"),
                ("target", "n_test"),
            ]  # noqa: E501
        )
    ]
    task = Task(
        f"shift2d/{shift}",
        Domain(f"{shift}_source", splits[0], splits[1]),
        Domain(f"{shift}_target", splits[2], splits[3]),
        num_classes=int(o["num_classes"]),
    )
    task.validate()
    for split in splits:
        split.x.flags.writeable = False
        split.y.flags.writeable = False
    return task


def task_factory(name: str, *, data_seed: int, **options) -> Task:
    """The :func:`tljax.data.tasks.register_task` factory: ``name`` is ``shift2d/<shift>``."""
    return shift2d_task(name.split("/", 1)[1], data_seed=data_seed, **options)

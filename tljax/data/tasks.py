"""A registry of transfer tasks built from offline data and seeded synthetic shifts.

Names are ``"source->target"``; the target is the source dataset with one shift of
:mod:`tljax.data.shifts` applied:

* ``moons``: the DANN toy, two moons -> the same points rotated (:mod:`tljax.data.toys`).
* ``digits->digits_m``, ``digits->digits_rot``, ``digits->digits_inv``: the UCI digits
  (scikit-learn) -> MNIST-M blend / rotation / inversion.
* ``fashion->fashion_m``, ``fashion->fashion_rot``, ``fashion->fashion_inv``: the same for
  Fashion-MNIST (``apt-get install dataset-fashion-mnist``; a clear FileNotFoundError
  otherwise).
* ``digits``, ``fashion``: single-domain tasks for supervised (pre)training and
  fine-tuning (inductive transfer) with the same trainer. The target *is* the source
  domain (the same train and test splits, grey ``(n, s, s, 1)``), so ``target_test_acc``
  equals ``source_test_acc``; methods with ``needs_target=False`` never look at it.
  ``data.labels_per_class`` subsamples the labelled (source) train split only.

Both domains use the same images and the same train/test split, as in the standard
MNIST -> MNIST-M setting (MNIST-M is built from MNIST's own train and test images); only
the shift tells them apart. The shift is applied to the target's train and test splits
separately, with seeds ``[data_seed, 1]`` and ``[data_seed, 2]``. For the ``_m`` tasks the
source is replicated to RGB so both domains are ``(n, s, s, 3)``.

Built tasks are cached in-process per argument set and their arrays are read-only, so
repeated calls are free and cannot corrupt each other; copy an array to modify it.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from tljax.data.core import Domain, Split, Task
from tljax.data.digits import load_uci_digits
from tljax.data.idx import load_fashion_mnist
from tljax.data.shifts import invert, mnist_m, resize, rotate, to_rgb
from tljax.data.toys import two_moons_task

# name -> (source dataset, shift); None for the toy.
_TASKS: dict[str, tuple[str, str] | None] = {
    "moons": None,
    "digits->digits_m": ("digits", "m"),
    "digits->digits_rot": ("digits", "rot"),
    "digits->digits_inv": ("digits", "inv"),
    "fashion->fashion_m": ("fashion", "m"),
    "fashion->fashion_rot": ("fashion", "rot"),
    "fashion->fashion_inv": ("fashion", "inv"),
    "digits": ("digits", "none"),
    "fashion": ("fashion", "none"),
}
_OPTIONS: dict[str, tuple[str, ...]] = {
    "moons": ("n_train", "n_test", "angle", "noise"),
    "digits": ("test_fraction",),
    "fashion": ("directory", "max_train", "max_test"),
    "rot": ("degrees",),
}
DEFAULT_ROTATION = 45.0  # degrees, for the ``_rot`` targets


def task_names() -> list[str]:
    """Returns the names :func:`get_task` accepts, sorted."""
    return sorted(_TASKS)


def get_task(name: str, *, data_seed: int = 0, image_size: int = 28, **kwargs) -> Task:
    """Builds (or returns the cached) transfer task ``name``.

    Args:
      name: one of :func:`task_names`.
      data_seed: seed of every random choice (split, subsample, shift), ``>= 0``.
      image_size: side length of the images (ignored by ``moons``).
      **kwargs: task options. ``moons``: ``n_train``, ``n_test``, ``angle``, ``noise``
        (see :func:`~tljax.data.toys.two_moons_task`). ``digits->*``: ``test_fraction``
        (default 0.3). ``fashion->*``: ``directory`` (default
        ``/usr/share/datasets/fashion-mnist``), ``max_train``, ``max_test`` (seeded
        subsample of each split, both domains alike). ``*_rot``: ``degrees`` (default 45).

    Returns:
      The task, with read-only arrays.

    Raises:
      ValueError: for an unknown name (listing the valid ones) or a bad seed, size or
        option value.
      TypeError: for an option the task does not take.
      FileNotFoundError: if Fashion-MNIST is not installed (saying how to install it).
    """
    if name not in _TASKS:
        raise ValueError(f"Unknown task {name!r}; valid tasks: {', '.join(task_names())}.")
    if not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ValueError(f"data_seed must be a non-negative integer, got {data_seed!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    spec = _TASKS[name]
    allowed = _OPTIONS["moons"] if spec is None else _OPTIONS[spec[0]] + _OPTIONS.get(spec[1], ())
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"Task {name!r} got unexpected option(s) {unknown}; valid options: {list(allowed)}."
        )
    if isinstance(kwargs.get("directory"), os.PathLike):
        kwargs["directory"] = os.fspath(kwargs["directory"])
    return _build(name, int(data_seed), int(image_size), tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=8)
def _build(name: str, data_seed: int, image_size: int, options: tuple) -> Task:
    opts = dict(options)
    spec = _TASKS[name]
    if spec is None:
        task = two_moons_task(seed=data_seed, **opts)
    else:
        dataset, shift = spec
        train, test = _load_source(dataset, data_seed, image_size, opts)
        if shift == "m":
            train, test = (Split(to_rgb(s.x), s.y) for s in (train, test))
        source = Domain(dataset, train, test)
        if shift == "none":  # single domain: the target is the source itself
            target = source
        else:
            target = Domain(
                f"{dataset}_{shift}",
                Split(_shift(train.x, shift, [data_seed, 1], opts), train.y.copy()),
                Split(_shift(test.x, shift, [data_seed, 2], opts), test.y.copy()),
            )
        task = Task(name, source, target, num_classes=10)
    task.validate()
    for domain in (task.source, task.target):
        for split in (domain.train, domain.test):
            split.x.flags.writeable = False
            split.y.flags.writeable = False
    return task


def _load_source(dataset: str, data_seed: int, image_size: int, opts: dict) -> tuple[Split, Split]:
    """Loads the source dataset's (train, test) at ``image_size``."""
    if dataset == "digits":
        return load_uci_digits(
            image_size=image_size,
            test_fraction=opts.get("test_fraction", 0.3),
            split_seed=data_seed,
        )
    train, test = load_fashion_mnist(opts.get("directory"))
    train = _subsample(train, opts.get("max_train"), [data_seed, 3], "max_train")
    test = _subsample(test, opts.get("max_test"), [data_seed, 4], "max_test")
    if image_size != train.x.shape[1]:
        train, test = (Split(resize(s.x, image_size), s.y) for s in (train, test))
    return train, test


def _subsample(split: Split, limit: int | None, seed: list[int], what: str) -> Split:
    """Keeps a seeded random subset of ``limit`` examples, in their original order."""
    if limit is None:
        return split
    if not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{what} must be a positive integer or None, got {limit!r}.")
    if limit >= len(split):
        return split
    keep = np.sort(np.random.default_rng(seed).permutation(len(split))[:limit])
    return Split(split.x[keep], split.y[keep])


def _shift(x: np.ndarray, shift: str, seed: list[int], opts: dict) -> np.ndarray:
    """Applies the target shift ``shift`` (``m``, ``rot`` or ``inv``) to images ``x``."""
    if shift == "m":
        return mnist_m(x, seed=seed)
    if shift == "rot":
        return rotate(x, opts.get("degrees", DEFAULT_ROTATION))
    return invert(x)

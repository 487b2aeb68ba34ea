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
  ``digits_m``, ``digits_rot``, ``digits_inv``, ``fashion_m``, ``fashion_rot``,
  ``fashion_inv``: the same for the shifted images alone — the target domain of
  ``digits->digits_rot`` etc. (identical arrays for the same seed), as a single domain.
* Text tasks (:mod:`tljax.data.text_tasks`, token ids for BERT backbones): ``reviews``,
  ``products``, ``reviews->products``, ``products->reviews`` (constructed, offline) and
  ``imdb`` (TFDS ``imdb_reviews``). They need the ``tokenizer`` option.
* Standard benchmarks: ``"A->B"`` for any two names of
  :func:`tljax.data.benchmarks.known_names` with the same classes, e.g. ``svhn->mnist``,
  ``mnist->usps``, ``office31/amazon->office31/webcam`` (:mod:`tljax.data.benchmark_tasks`;
  the data must be prepared, else a :class:`~tljax.data.benchmarks.DatasetNotFoundError`
  says what to fetch and where).

Other modules add tasks with :func:`register_task` (a factory and its option names), or
whole families of names with :func:`register_resolver`. Installed packages add tasks as
entry points of the group ``tljax.tasks`` (``"my->task" = "my_package.tasks:factory"``),
found lazily on an unknown name or when the names are listed: the entry point loads
``factory(name, *, data_seed, **options) -> Task``, whose keyword parameters are its
options (``image_size`` among them: it gets :func:`get_task`'s), or a
:class:`RegisteredTask`.

Both domains use the same images and the same train/test split, as in the standard
MNIST -> MNIST-M setting (MNIST-M is built from MNIST's own train and test images); only
the shift tells them apart. The shift is applied to the target's train and test splits
separately, with seeds ``[data_seed, 1]`` and ``[data_seed, 2]``. For the ``_m`` tasks the
source is replicated to RGB so both domains are ``(n, s, s, 3)``.

Built tasks are cached in-process per argument set and their arrays are read-only, so
repeated calls are free and cannot corrupt each other; copy an array to modify it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import os
from collections.abc import Callable

import numpy as np

from tljax import registry as _registry
from tljax.data import shift2d
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
    # Single-domain tasks of the shifted images: the pair's target domain on its own, for
    # supervised training on it (fine-tuning targets, e.g. experiments.zoo).
    **{f"{d}_{s}": (d, s) for d in ("digits", "fashion") for s in ("m", "rot", "inv")},
}
_OPTIONS: dict[str, tuple[str, ...]] = {
    "moons": ("n_train", "n_test", "angle", "noise"),
    "digits": ("test_fraction",),
    "fashion": ("directory", "max_train", "max_test"),
    "rot": ("degrees",),
}
DEFAULT_ROTATION = 45.0  # degrees, for the ``_rot`` targets


@dataclasses.dataclass(frozen=True)
class RegisteredTask:
    """A task added with :func:`register_task`.

    Attributes:
      factory: ``factory(name, *, data_seed, **options) -> Task`` or a lazily imported
        ``"module:function"`` string. It does its own caching and validation of values.
      options: the option names it accepts (others are rejected before it is called).
    """

    factory: str | Callable
    options: tuple[str, ...]
    # The factory also takes ``image_size`` (get_task's argument, i.e. data.image_size).
    takes_image_size: bool = False


_TEXT_OPTIONS = ("tokenizer", "max_len", "n_train", "n_test", "shared_fraction", "negation")
_REGISTERED: dict[str, RegisteredTask] = {
    **{
        name: RegisteredTask("tljax.data.text_tasks:constructed_task", _TEXT_OPTIONS)
        for name in ("reviews", "products", "reviews->products", "products->reviews")
    },
    "imdb": RegisteredTask(
        "tljax.data.text_tasks:imdb_task",
        ("tokenizer", "max_len", "data_dir", "max_train", "max_test"),
    ),
    **{
        f"shift2d/{s}": RegisteredTask("tljax.data.shift2d:task_factory", shift2d.ALL_OPTIONS)
        for s in shift2d.SHIFTS
    },
}


def register_task(
    name: str,
    factory: str | Callable,
    options: tuple[str, ...] = (),
    *,
    takes_image_size: bool = False,
) -> None:
    """Adds a task to the registry (or replaces a registered one).

    Args:
      name: the task name, e.g. ``"amazon->webcam"``; must not be a built-in name.
      factory: ``factory(name, *, data_seed, **options) -> Task``, or a
        ``"module:function"`` string imported on first use.
      options: names of the options ``factory`` accepts.
      takes_image_size: pass :func:`get_task`'s ``image_size`` to the factory too.

    Raises:
      ValueError: if ``name`` is one of the built-in image tasks.
    """
    if name in _TASKS:
        raise ValueError(f"Task {name!r} is built in and cannot be replaced.")
    _REGISTERED[name] = RegisteredTask(factory, tuple(options), takes_image_size)


# Families of names resolved on demand: (resolver, description); ``resolver(name)`` returns
# a RegisteredTask for the names it handles, else None. Strings are imported lazily.
_RESOLVERS: list[tuple[str | Callable, str]] = [
    (
        "tljax.data.benchmark_tasks:resolve",
        "'A->B' for two benchmark domains of tljax.data.benchmarks.known_names() with the "
        "same classes (e.g. 'svhn->mnist', 'office31/amazon->office31/webcam')",
    ),
    (
        "tljax.data.corruption_tasks:resolve",
        "'<digits|fashion|cifar10|imagenet>-c/<corruption>/<1..5>'",
    ),
    (
        "tljax.data.multi_domain:resolve",
        "'dg/<set>' (domain generalization) or 'msda/<set>' (multi-source adaptation) for a "
        "domain set of tljax.data.domain_sets.domain_set_names()",
    ),
    (
        "tljax.data.label_sets:resolve",
        "'<partial|open_set|universal>/<task>' for a label-set variant of any task "
        "(tljax.data.label_sets)",
    ),
]


def register_resolver(resolver: str | Callable, description: str) -> None:
    """Adds a family of task names resolved on demand (tried after the exact names).

    Args:
      resolver: ``resolver(name) -> RegisteredTask | None`` (``None``: not one of its
        names), or a ``"module:function"`` string imported on first use.
      description: what names it accepts, for the unknown-task error message.
    """
    _RESOLVERS.append((resolver, description))


def _from_entry_point(name: str) -> RegisteredTask | None:
    """The task of an installed plug-in's ``tljax.tasks`` entry point ``name`` (loaded
    once, then registered), or None."""
    ep = _registry.entry_points(_registry.GROUPS["task"]).get(name)
    if ep is None:
        return None
    obj = _registry.load_entry_point(ep, "task")
    if not isinstance(obj, RegisteredTask):
        if not callable(obj):
            raise TypeError(
                f"The task entry point {ep.name} = {ep.value} loads {obj!r}: expected "
                "factory(name, *, data_seed, **options) -> Task or a RegisteredTask."
            )
        params = inspect.signature(obj).parameters.values()
        keywords = [
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in ("name", "data_seed", "image_size")
        ]
        takes_image_size = any(p.name == "image_size" for p in params)
        obj = RegisteredTask(obj, tuple(keywords), takes_image_size)
    _REGISTERED[name] = obj
    return obj


def _resolve(name: str) -> RegisteredTask | None:
    for resolver, _ in _RESOLVERS:
        if isinstance(resolver, str):
            module, fn = resolver.split(":")
            resolver = getattr(importlib.import_module(module), fn)
        spec = resolver(name)
        if spec is not None:
            return spec
    return None


def task_names() -> list[str]:
    """Returns the names :func:`get_task` accepts, sorted, installed plug-ins' included
    (families of names added with :func:`register_resolver`, such as benchmark pairs, are
    not enumerated)."""
    return sorted({*_TASKS, *_REGISTERED, *_registry.entry_points(_registry.GROUPS["task"])})


def registered_task_names() -> list[str]:
    """The names added with :func:`register_task` (incl. the text tasks), sorted."""
    return sorted(_REGISTERED)


def _get_registered(
    spec: RegisteredTask, name: str, data_seed: int, image_size, kwargs: dict
) -> Task:
    unknown = sorted(set(kwargs) - set(spec.options))
    if unknown:
        raise TypeError(
            f"Task {name!r} got unexpected option(s) {unknown}; valid options: "
            f"{list(spec.options)}."
        )
    factory = spec.factory
    if isinstance(factory, str):
        module, fn = factory.split(":")
        factory = getattr(importlib.import_module(module), fn)
    if spec.takes_image_size:
        _check_image_size(image_size)
        kwargs = dict(kwargs, image_size=int(image_size))
    return factory(name, data_seed=int(data_seed), **kwargs)


def _check_image_size(image_size) -> None:
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")


def get_task(name: str, *, data_seed: int = 0, image_size: int = 28, **kwargs) -> Task:
    """Builds (or returns the cached) transfer task ``name``.

    Args:
      name: one of :func:`task_names`.
      data_seed: seed of every random choice (split, subsample, shift), ``>= 0``.
      image_size: side length of the images (ignored by ``moons`` and text tasks; for
        benchmark pairs, both domains are resized to it).
      **kwargs: task options. ``moons``: ``n_train``, ``n_test``, ``angle``, ``noise``
        (see :func:`~tljax.data.toys.two_moons_task`). ``digits->*``: ``test_fraction``
        (default 0.3). ``fashion->*``: ``directory`` (default
        ``/usr/share/datasets/fashion-mnist``), ``max_train``, ``max_test`` (seeded
        subsample of each split, both domains alike). ``*_rot``: ``degrees`` (default 45).
        Text tasks: see :mod:`tljax.data.text_tasks`; benchmark pairs: see
        :func:`tljax.data.benchmark_tasks.benchmark_pair`; registered tasks: their
        factory's.

    Returns:
      The task, with read-only arrays.

    Raises:
      ValueError: for an unknown name (listing the valid ones) or a bad seed, size or
        option value.
      TypeError: for an option the task does not take.
      FileNotFoundError: if Fashion-MNIST (or a text task's data) is not installed
        (saying how to install it); for a benchmark pair that is not prepared, its
        subclass ``DatasetNotFoundError`` (saying what to fetch and where).
    """
    spec = _REGISTERED.get(name) or (
        None if name in _TASKS else (_from_entry_point(name) or _resolve(name))
    )
    if name not in _TASKS and spec is None:
        families = "".join(f"; or {d}" for _, d in _RESOLVERS)
        raise _registry.unknown_name_error("task", name, task_names(), extra=families)
    if not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ValueError(f"data_seed must be a non-negative integer, got {data_seed!r}.")
    if spec is not None:
        return _get_registered(spec, name, data_seed, image_size, kwargs)
    _check_image_size(image_size)
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
            if "->" not in name:  # the shifted images alone, as one domain
                source = target
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

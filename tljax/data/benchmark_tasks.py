"""Transfer tasks made of two standard benchmark domains: ``"svhn->mnist"``,
``"mnist->usps"``, ``"office31/amazon->office31/webcam"``, ``"visda2017/synthetic->
visda2017/real"``, ``"domainnet/real->domainnet/sketch"``, ...

Any two names of :func:`tljax.data.benchmarks.known_names` with the same label set form
a task (``config.data.task = "A->B"``); :func:`resolve` is registered as a resolver of
:mod:`tljax.data.tasks`, so no list of pairs is kept. The label sets must match, not only
their sizes: the digits (MNIST, USPS, SVHN, MNIST-M) share one, each multi-domain
benchmark (Office-31, Office-Home, VisDA-2017, DomainNet) one of its own, Fashion-MNIST
its own.

Both domains are read with :func:`tljax.data.benchmarks.load_domain` at
``data.image_size`` (square), from the TFDS ``data_dir``; nothing is random (the
official splits, ``data_seed`` is unused). A domain without an official test split
(Office-31, Office-Home, VisDA) is both ``train`` and ``test`` (the same arrays), as in
TLlib. Channels: when one domain is grey and the other RGB, the grey one is repeated to
3 channels (the SVHN → MNIST protocol: MNIST as 32×32×3); two grey domains stay grey
(MNIST ↔ USPS at 28×28×1). Options (``data.task_kwargs``):

* ``data_dir``: TFDS data directory (default: TFDS's, ``$TFDS_DATA_DIR`` or
  ``~/tensorflow_datasets``);
* ``max_examples``: keep at most this many examples per split of each domain (the first
  ones in TFDS's stored order) — the photo benchmarks (Office, VisDA, DomainNet) are held
  in memory as uint8 (150 KB per 224×224 image: Office-31 ~0.6 GB, VisDA-2017 ~31 GB,
  DomainNet ~18 GB), converted to float on the device (:mod:`tljax.data.pixels`); the
  digits stay float32 in [0, 1];
* ``stream``: ``True`` keeps the photos on disk, decoded on access
  (:class:`~tljax.data.benchmarks.loader.StreamedImages`; training batches come from
  :class:`tljax.data.grain_stream.GrainPairStream`); set by ``data.stream``;
* ``grayscale_to_rgb``: ``None`` (default: only when the channel counts differ),
  ``True`` (always 3 channels) or ``False`` (never; different channel counts are then
  an error).

A domain that is not prepared raises :class:`~tljax.data.benchmarks.DatasetNotFoundError`
saying what to download, where to put it and the command that prepares it — never
random stand-in data.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from tljax.data.core import Domain, Split, Task
from tljax.data.tasks import RegisteredTask

OPTIONS = ("data_dir", "max_examples", "grayscale_to_rgb", "stream")
_DIGITS = frozenset({"mnist", "usps", "svhn", "mnist_m"})


def label_set(name: str) -> str:
    """The label set of a benchmark domain: ``"digits"``, ``"office31"``, ..."""
    return "digits" if name in _DIGITS else name.split("/")[0]


def parse(name: str) -> tuple[str, str] | None:
    """``"A->B"`` → ``(A, B)`` when both are benchmark names with the same label set.

    Returns:
      ``None`` when ``name`` is not ``A->B`` with two benchmark names (so other resolvers
      and the unknown-task error, which lists the valid names, get their turn).

    Raises:
      ValueError: when the two label sets differ.
    """
    if not isinstance(name, str) or name.count("->") != 1:
        return None
    from tljax.data.benchmarks import get_benchmark, known_names

    source, target = name.split("->")
    known = set(known_names())
    if source not in known or target not in known:
        return None
    a, b = get_benchmark(source), get_benchmark(target)
    if label_set(source) != label_set(target) or a.num_classes != b.num_classes:
        raise ValueError(
            f"Task {name!r}: {source!r} ({label_set(source)}, {a.num_classes} classes) and "
            f"{target!r} ({label_set(target)}, {b.num_classes} classes) do not share one "
            "label set; pair domains of the same benchmark (the digits mnist, usps, svhn, "
            "mnist_m share one)."
        )
    return source, target


def resolve(name: str):
    """The resolver registered in :mod:`tljax.data.tasks` for benchmark pairs."""
    if parse(name) is None:
        return None
    return RegisteredTask(benchmark_pair, OPTIONS, takes_image_size=True)


def benchmark_pair(
    name: str,
    *,
    data_seed: int = 0,
    image_size: int,
    data_dir: str | os.PathLike | None = None,
    max_examples: int | None = None,
    grayscale_to_rgb: bool | None = None,
    stream: bool = False,
) -> Task:
    """Builds (or returns the cached) task ``"A->B"`` from two prepared benchmark domains.

    Args:
      name: ``"A->B"`` with ``A``, ``B`` from :func:`tljax.data.benchmarks.known_names`.
      data_seed: unused (official splits, no randomness); accepted like every task's.
      image_size: side of the square images both domains are resized to.
      data_dir: TFDS data directory; ``None`` or ``""``: TFDS's default.
      max_examples: at most this many examples per split of each domain.
      grayscale_to_rgb: ``None`` (repeat a grey domain to 3 channels when the other is
        RGB), ``True`` (always) or ``False`` (never).
      stream: keep the images on disk, decoded on access (uint8).

    Returns:
      The task, with read-only NHWC images (uint8 for the photo benchmarks, float32 in
      [0, 1] for the digits) and int32 labels.

    Raises:
      ValueError: for a name that is not a benchmark pair, a bad option, or channel counts
        that differ with ``grayscale_to_rgb=False``.
      DatasetNotFoundError: if a domain is not prepared in ``data_dir``.
    """
    del data_seed
    pair = parse(name)
    if pair is None:
        raise ValueError(f"{name!r} is not a pair 'A->B' of benchmark domain names.")
    if max_examples is not None and (
        isinstance(max_examples, bool)
        or not isinstance(max_examples, (int, np.integer))
        or max_examples < 1
    ):
        raise ValueError(f"max_examples must be a positive integer or None, got {max_examples!r}.")
    if grayscale_to_rgb not in (None, True, False):
        raise ValueError(f"grayscale_to_rgb must be None, True or False, got {grayscale_to_rgb!r}.")
    data_dir = os.fspath(data_dir) if data_dir else None
    limit = None if max_examples is None else int(max_examples)
    if stream not in (True, False):
        raise ValueError(f"stream must be True or False, got {stream!r}.")
    return _build(name, *pair, int(image_size), data_dir, limit, grayscale_to_rgb, stream)


# One task at a time: photo benchmarks take gigabytes; repeated builds (seeds, tests) hit.
@functools.lru_cache(maxsize=1)
def _build(
    name, source, target, image_size, data_dir, max_examples, grayscale_to_rgb, stream=False
) -> Task:
    from tljax.data.benchmarks import load_domain

    photos = label_set(source) not in ("digits", "fashion_mnist")
    kwargs = dict(
        data_dir=data_dir,
        image_size=image_size,
        max_examples=max_examples,
        dtype="uint8" if photos or stream else "float32",
        stream=stream,
    )
    domains = [load_domain(source, **kwargs), load_domain(target, **kwargs)]
    channels = [d.train.x.shape[-1] for d in domains]
    if grayscale_to_rgb is False and channels[0] != channels[1]:
        raise ValueError(
            f"Task {name!r}: {source!r} has {channels[0]} channel(s) and {target!r} "
            f"{channels[1]}, and grayscale_to_rgb=False; set it to None or True to repeat "
            "the grey domain to RGB."
        )
    if (grayscale_to_rgb or channels[0] != channels[1]) and stream:
        # Decoded as RGB on access: no array to repeat.
        domains = [load_domain(n, grayscale_to_rgb=True, **kwargs) for n in (source, target)]
    elif grayscale_to_rgb or channels[0] != channels[1]:
        domains = [_to_rgb(d) for d in domains]
    task = Task(name, domains[0], domains[1], num_classes=_num_classes(source))
    task.validate()
    for domain in (task.source, task.target):
        for split in (domain.train, domain.test):
            if isinstance(split.x, np.ndarray):  # a StreamedImages is read-only anyway
                split.x.flags.writeable = False
            split.y.flags.writeable = False
    return task


def _num_classes(name: str) -> int:
    from tljax.data.benchmarks import get_benchmark

    return get_benchmark(name).num_classes


def _to_rgb(domain: Domain) -> Domain:
    """Repeats a grey domain's images to 3 channels (keeping ``train is test``)."""
    if domain.train.x.shape[-1] == 3:
        return domain

    def rgb(split: Split) -> Split:
        return Split(np.repeat(split.x, 3, axis=-1), split.y)

    train = rgb(domain.train)
    test = train if domain.test is domain.train else rgb(domain.test)
    return Domain(domain.name, train, test)

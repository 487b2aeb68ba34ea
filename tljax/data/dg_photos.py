"""DomainBed's photo domain sets from prepared TFDS data: ``pacs``, ``vlcs``,
``office_home_dg``, ``terra_incognita`` and ``domainnet_dg``.

Each domain is one TFDS builder config (:mod:`tljax.data.benchmarks.builders`): PACS,
VLCS and TerraIncognita from :mod:`~tljax.data.benchmarks.builders.domainbed`,
Office-Home and DomainNet from the existing ``office_home`` and ``tljax_domainnet``
builders. As in DomainBed, every image of a domain is used (DomainNet: its official train
and test lists together) and split 80/20 into "in" (``train``) and "out" (``test``) by
:func:`tljax.data.domain_sets.in_out_split`, seeded by ``data_seed``. Domains come in
DomainBed's order (sorted folder names). Images are resized to ``image_size`` (default
224) without keeping the aspect ratio and held as uint8 NHWC RGB (150 KB per 224x224
image; the train and eval steps convert on the device, :mod:`tljax.data.pixels`), or
with ``stream=True`` kept on disk and decoded on access (:class:`StreamedSubset`).

Prepare a set's domains once (TF-free; the sources are manual downloads, see
:data:`SETS` and each builder's ``MANUAL_DOWNLOAD_INSTRUCTIONS``)::

    python -m tljax.data.dg_photos prepare pacs --manual_dir ~/domainbed_data

A domain that is not prepared raises :class:`DomainSetNotFoundError` (a
:class:`~tljax.data.benchmarks.DatasetNotFoundError`) naming the folders or archives
expected, where to put them and that command -- never random stand-in data.

Differences from DomainBed: class labels follow one fixed class list per benchmark (the
builders'), not each domain's own sorted folders, so a domain lacking a class keeps the
same label indices; DomainNet keeps the images DomainBed deletes as duplicates
(``domain_net_duplicates.txt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import textwrap
from collections.abc import Sequence

import numpy as np

from tljax.data.benchmarks import builders
from tljax.data.benchmarks.loader import (
    Benchmark,
    DatasetNotFoundError,
    StreamedImages,
    _data_source,
    _pool,
    _read_labels,
    _read_split,
    get_benchmark,
)
from tljax.data.core import Domain, Split
from tljax.data.domain_sets import (
    HOLDOUT_FRACTION,
    DomainSet,
    check_holdout_fraction,
    in_out_split,
    split_domain,
)

PHOTO_SIZE = 224


class DomainSetNotFoundError(DatasetNotFoundError):
    """A domain of a photo domain set is not prepared in the TFDS data directory."""


@dataclasses.dataclass(frozen=True)
class PhotoSet:
    """A photo domain set: its domains' names and where each lives in TFDS.

    Attributes:
      name: the domain set's name, e.g. ``"pacs"``.
      domains: ``(domain name, benchmark spec)`` pairs in DomainBed's order.
      num_classes: number of classes.
    """

    name: str
    domains: tuple[tuple[str, Benchmark], ...]
    num_classes: int

    def domain_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.domains)


def _own(builder, names: Sequence[str]) -> tuple[tuple[str, Benchmark], ...]:
    """Specs of a builder of :mod:`~tljax.data.benchmarks.builders.domainbed`."""
    configs = [c.name for c in builder.BUILDER_CONFIGS]
    return tuple(
        (
            name,
            Benchmark(
                f"{builder.name}/{config}",
                builder.name,
                config,
                "train",
                "train",
                len(builder.CLASS_NAMES),
                builder,
            ),
        )
        for name, config in zip(names, configs, strict=True)
    )


def _known(prefix: str, names: Sequence[str], configs: Sequence[str]):
    """Specs of benchmarks of :mod:`tljax.data.benchmarks.loader`'s table."""
    return tuple(
        (name, get_benchmark(f"{prefix}/{config}"))
        for name, config in zip(names, configs, strict=True)
    )


def _sets() -> dict[str, PhotoSet]:
    b = builders
    office = ("Art", "Clipart", "Product", "Real_World")
    domainnet = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
    return {
        "pacs": PhotoSet("pacs", _own(b.Pacs, ("art_painting", "cartoon", "photo", "sketch")), 7),
        "vlcs": PhotoSet("vlcs", _own(b.Vlcs, ("Caltech101", "LabelMe", "SUN09", "VOC2007")), 5),
        "office_home_dg": PhotoSet(
            "office_home_dg",
            _known("office_home", office, [n.lower() for n in office]),
            len(b.OfficeHome.CLASS_NAMES),
        ),
        "terra_incognita": PhotoSet(
            "terra_incognita",
            _own(b.TerraIncognita, [c.name for c in b.TerraIncognita.BUILDER_CONFIGS]),
            len(b.TerraIncognita.CLASS_NAMES),
        ),
        "domainnet_dg": PhotoSet(
            "domainnet_dg", _known("domainnet", domainnet, domainnet), len(b.DomainNet.CLASS_NAMES)
        ),
    }


SETS: dict[str, PhotoSet] = _sets()


def missing_message(photo_set: PhotoSet, spec: Benchmark, builder) -> str:
    """What is missing, where TFDS looked, what to fetch and the command that prepares it."""
    root = os.fspath(builder.data_dir_root)
    instructions = textwrap.dedent(spec.builder.MANUAL_DOWNLOAD_INSTRUCTIONS or "").strip()
    return (
        f"Domain set {photo_set.name!r}: TFDS dataset {spec.tfds_id!r} (version "
        f"{builder.version}) is not prepared in data_dir {root!r} (looked in "
        f"{os.fspath(builder.data_dir)}).\n\n"
        f"Source files:\n{textwrap.indent(instructions, '  ')}\n\n"
        f"Prepare all {len(photo_set.domains)} domains (TF-free) with:\n"
        f"  python -m tljax.data.dg_photos prepare {photo_set.name} --data_dir {root} "
        "--manual_dir MANUAL_DIR\n"
        "or in Python:\n"
        f"  tljax.data.dg_photos.prepare({photo_set.name!r}, data_dir={root!r}, "
        "manual_dir=MANUAL_DIR)"
    )


def prepare(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    domains: Sequence[str] | None = None,
) -> list[str]:
    """Prepares the domains of photo set ``name`` in ``array_record`` format, TF-free.

    Args:
      name: a key of :data:`SETS`.
      data_dir: TFDS data directory; ``None``: TFDS's default.
      manual_dir: folder with the downloaded files; ``None``: ``<data_dir>/downloads/manual``.
      domains: the domain names to prepare (default: all).

    Returns:
      The folders the domains were written to.
    """
    import tensorflow_datasets as tfds

    photo_set = _get(name)
    out = []
    for _, spec in _select(photo_set, domains):
        builder = spec.builder(config=spec.config, data_dir=data_dir, file_format="array_record")
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
        out.append(os.fspath(builder.data_dir))
    return out


def _get(name: str) -> PhotoSet:
    if name not in SETS:
        raise ValueError(f"Unknown photo domain set {name!r}; valid: {sorted(SETS)}.")
    return SETS[name]


def _select(photo_set: PhotoSet, domains: Sequence[str] | None):
    if domains is None:
        return photo_set.domains
    domains = (domains,) if isinstance(domains, str) else tuple(domains)
    unknown = [d for d in domains if d not in photo_set.domain_names()]
    if unknown or len(set(domains)) != len(domains):
        raise ValueError(
            f"domains of {photo_set.name!r} must be distinct names of "
            f"{list(photo_set.domain_names())}, got {list(domains)}."
        )
    return tuple(d for d in photo_set.domains if d[0] in domains)


class StreamedSubset:
    """Some images of one or more :class:`StreamedImages`, decoded on access (array-like).

    The images are those at positions ``index`` of the concatenation of ``parts`` (a
    domain's TFDS splits); ``x[i]``, ``x[a:b]``, ``x[index_array]``, ``example(i)``,
    ``shape``, ``dtype`` and ``len`` behave as :class:`StreamedImages`' do, so the
    in-memory and grain streams read it alike.

    Args:
      parts: the streamed splits, all of one image shape.
      index: positions in their concatenation, ``(n,)``.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, parts: Sequence[StreamedImages], index: np.ndarray):
        shapes = {tuple(p.shape[1:]) for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"The streamed parts have different image shapes: {shapes}.")
        self.parts = tuple(parts)
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.index = np.asarray(index, np.int64)
        if self.index.size and not 0 <= self.index.min() <= self.index.max() < self.starts[-1]:
            raise ValueError(f"index must lie in [0, {self.starts[-1]}).")
        self.shape = (len(self.index), *shapes.pop())

    def __len__(self) -> int:
        return self.shape[0]

    def example(self, i: int) -> np.ndarray:
        """Decodes image ``i`` to a uint8 ``(h, w, 3)`` array."""
        position = int(self.index[int(i)])
        k = int(np.searchsorted(self.starts, position, side="right")) - 1
        return self.parts[k].example(position - int(self.starts[k]))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} images")
            return self.example(i)
        index = np.arange(len(self))[key]
        if index.ndim != 1:
            raise TypeError(f"StreamedSubset takes an int, a slice or a 1-D index, got {key!r}.")
        out = np.empty((len(index), *self.shape[1:]), np.uint8)
        for j, image in enumerate(_pool().map(self.example, index.tolist())):
            out[j] = image
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"StreamedSubset(shape={self.shape}, dtype=uint8)"


def _sources(photo_set: PhotoSet, spec: Benchmark, data_dir, limit: int | None):
    """``(split's data source, number of records to take)`` of one domain's splits."""
    builder = spec.builder(config=spec.config, data_dir=data_dir)
    out, taken = [], 0
    for split in dict.fromkeys((spec.train_split, spec.test_split)):
        if limit is not None and taken >= limit:
            break
        try:
            source = _data_source(spec, builder, split)
        except DatasetNotFoundError as e:
            raise DomainSetNotFoundError(missing_message(photo_set, spec, builder)) from e
        n = len(source) if limit is None else min(len(source), limit - taken)
        out.append((source, n))
        taken += n
    return out


def _load_domain(
    photo_set: PhotoSet,
    k: int,
    *,
    data_dir,
    size: int,
    limit: int | None,
    stream: bool,
    holdout_fraction: float,
    data_seed: int,
) -> Domain:
    """Domain ``k`` of the set: all its images (train and test splits together, at most
    ``limit``), split into in/out."""
    domain, spec = photo_set.domains[k]
    sources = _sources(photo_set, spec, data_dir, limit)
    seed = [data_seed, 2, k]
    if not stream:
        parts = [
            _read_split(source, max_examples=n, size=(size, size), channels=3, dtype="uint8")
            for source, n in sources
        ]
        x = np.concatenate([p.x for p in parts])
        y = np.concatenate([p.y for p in parts])
        return split_domain(domain, x, y, holdout_fraction=holdout_fraction, seed=seed)
    images = [StreamedImages(source, n, size=(size, size), channels=3) for source, n in sources]
    y = np.concatenate([_read_labels(source, n) for source, n in sources])
    in_idx, out_idx = in_out_split(len(y), holdout_fraction=holdout_fraction, seed=seed)
    return Domain(
        domain,
        Split(StreamedSubset(images, in_idx), y[in_idx]),
        Split(StreamedSubset(images, out_idx), y[out_idx]),
    )


def photo_domain_set(
    name: str,
    *,
    data_seed: int = 0,
    image_size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    max_per_domain: int | None = None,
    domains: Sequence[str] | None = None,
    holdout_fraction: float = HOLDOUT_FRACTION,
    stream: bool = False,
) -> DomainSet:
    """Loads photo set ``name`` (a key of :data:`SETS`) from prepared TFDS data.

    Args:
      name: ``"pacs"``, ``"vlcs"``, ``"office_home_dg"``, ``"terra_incognita"`` or
        ``"domainnet_dg"``.
      data_seed: seed of the in/out splits.
      image_size: side of the square images (default 224).
      data_dir: TFDS data directory; ``None`` or ``""``: TFDS's default.
      max_per_domain: at most this many images per domain: the first ones in TFDS's
        stored order (shuffled deterministically when prepared); ``None``: all.
      domains: a subset of the domain names to load, in the set's order (default: all).
      holdout_fraction: fraction of each domain in its "out" (test) split.
      stream: keep the images on disk: each split's ``x`` is a :class:`StreamedSubset`
        (uint8, decoded on access, the same values as in memory); only the labels are
        read up front. For sets that do not fit in memory (DomainNet: 586,575
        images x 150,528 bytes at 224x224 = 88 GB).

    Returns:
      The set: uint8 images ``(n, s, s, 3)``, int32 labels.

    Raises:
      DomainSetNotFoundError: if a domain is not prepared (saying what to fetch, where to
        put it and how to prepare it).
      ValueError: for an unknown name or domain, or a bad option value.
    """
    photo_set = _get(name)
    if max_per_domain is not None and (
        isinstance(max_per_domain, bool)
        or not isinstance(max_per_domain, (int, np.integer))
        or max_per_domain < 1
    ):
        raise ValueError(
            f"max_per_domain must be a positive integer or None, got {max_per_domain!r}."
        )
    holdout_fraction = check_holdout_fraction(holdout_fraction)
    size = PHOTO_SIZE if image_size is None else int(image_size)
    data_dir = os.fspath(data_dir) if data_dir else None
    limit = None if max_per_domain is None else int(max_per_domain)
    if stream not in (True, False):
        raise ValueError(f"stream must be True or False, got {stream!r}.")
    chosen = dict(_select(photo_set, domains))
    out = tuple(
        _load_domain(
            photo_set,
            k,
            data_dir=data_dir,
            size=size,
            limit=limit,
            stream=stream,
            holdout_fraction=holdout_fraction,
            data_seed=data_seed,
        )
        for k, (domain, _) in enumerate(photo_set.domains)
        if domain in chosen
    )
    return DomainSet(name, out, num_classes=photo_set.num_classes)


def _builder_for(name: str):
    def build(
        *,
        data_seed: int = 0,
        image_size: int | None = None,
        data_dir: str | os.PathLike | None = None,
        max_per_domain: int | None = None,
        domains: Sequence[str] | None = None,
        holdout_fraction: float = HOLDOUT_FRACTION,
        stream: bool = False,
    ) -> DomainSet:
        return photo_domain_set(
            name,
            data_seed=data_seed,
            image_size=image_size,
            data_dir=data_dir,
            max_per_domain=max_per_domain,
            domains=domains,
            holdout_fraction=holdout_fraction,
            stream=stream,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"The {name!r} domain set; see :func:`photo_domain_set`."
    return build


pacs = _builder_for("pacs")
vlcs = _builder_for("vlcs")
office_home_dg = _builder_for("office_home_dg")
terra_incognita = _builder_for("terra_incognita")
domainnet_dg = _builder_for("domainnet_dg")


def main(argv: list[str] | None = None) -> None:
    """``python -m tljax.data.dg_photos list`` or ``... prepare NAME [--data_dir D]
    [--manual_dir M] [--domain X ...]``."""
    parser = argparse.ArgumentParser(prog="python -m tljax.data.dg_photos")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the photo domain sets and their domains")
    prep = commands.add_parser("prepare", help="prepare a set's domains from manual_dir")
    prep.add_argument("name", choices=sorted(SETS))
    prep.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's)")
    prep.add_argument("--manual_dir", default=None, help="folder with the downloaded files")
    prep.add_argument("--domain", action="append", default=None, help="only this domain")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, photo_set in SETS.items():
            tfds_ids = ", ".join(spec.tfds_id for _, spec in photo_set.domains)
            print(f"{name:16s} {photo_set.num_classes:4d} classes  {tfds_ids}")
        return
    for path in prepare(
        args.name, data_dir=args.data_dir, manual_dir=args.manual_dir, domains=args.domain
    ):
        print(f"Prepared {path}")


if __name__ == "__main__":
    main()

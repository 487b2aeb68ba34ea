"""Domain sets: several named, labelled domains of one label space (domain generalization).

A :class:`DomainSet` is what DomainBed (Gulrajani & Lopez-Paz, "In Search of Lost Domain
Generalization", ICLR 2021) calls a dataset of environments: RotatedMNIST's six angles,
PACS's four styles, ... Every domain comes split as DomainBed splits it: ``train`` is the
80% "in" split, ``test`` the 20% "out" split (:func:`in_out_split`: a seeded random,
unstratified partition with ``int(0.2 * n)`` examples out, as DomainBed's
``misc.split_dataset``). The two never share an example.

Built-in sets (``python -m tljax.data.domain_sets list``; ``docs/domain_generalization.md``):

* offline (:mod:`tljax.data.dg_offline`): ``rotated_digits``, ``colored_fashion``,
  ``digits_styles``;
* DomainBed's photo benchmarks (:mod:`tljax.data.dg_photos`, prepared TFDS data):
  ``pacs``, ``vlcs``, ``office_home_dg``, ``terra_incognita``, ``domainnet_dg``.

Registry: ``register_domain_set(name, builder, description)`` adds a set;
``get_domain_set(name, data_seed=, image_size=, **options)`` builds (or returns the cached)
set; installed packages add sets through entry points of the group
``tljax.domain_sets`` (see :mod:`tljax.registry`). A builder is
``builder(*, data_seed: int, image_size: int | None, **options) -> DomainSet`` (or a
``"module:function"`` string imported on first use); ``image_size=None`` asks for the
set's default size, and its keyword parameters are the set's options.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Sequence

import numpy as np

from tljax import registry as _registry
from tljax.data.core import Domain, Split

ENTRY_POINT_GROUP = "tljax.domain_sets"
HOLDOUT_FRACTION = 0.2  # DomainBed's --holdout_fraction default


@dataclasses.dataclass(frozen=True)
class DomainSet:
    """Several named labelled domains with one label space.

    Attributes:
      name: e.g. ``"rotated_digits"``.
      domains: the domains, in the set's order (DomainBed's environment order); each
        ``train`` split is the 80% "in" split, ``test`` the 20% "out" split.
      num_classes: labels are in ``[0, num_classes)`` in every domain.
    """

    name: str
    domains: tuple[Domain, ...]
    num_classes: int

    def domain_names(self) -> tuple[str, ...]:
        """The domains' names, in order."""
        return tuple(d.name for d in self.domains)

    def domain(self, name: str) -> Domain:
        """The domain called ``name``.

        Raises:
          ValueError: if there is none (listing the valid names).
        """
        for d in self.domains:
            if d.name == name:
                return d
        raise ValueError(
            f"Domain set {self.name!r} has no domain {name!r}; valid: {list(self.domain_names())}."
        )

    def validate(self) -> None:
        """Checks names, shapes and labels.

        Raises:
          ValueError: if there are fewer than two domains, two domains share a name, a
            train split is empty, per-example shapes differ between domains or splits,
            ``num_classes < 1``, or a label is outside ``[0, num_classes)``.
        """
        if len(self.domains) < 2:
            raise ValueError(
                f"Domain set {self.name!r} has {len(self.domains)} domain(s); a domain set "
                "needs at least two."
            )
        names = self.domain_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"Domain set {self.name!r}: domain names must be unique, {duplicates} occur "
                f"more than once in {list(names)}."
            )
        if isinstance(self.num_classes, bool) or not isinstance(
            self.num_classes, (int, np.integer)
        ):
            raise ValueError(
                f"Domain set {self.name!r}: num_classes must be an int, got {self.num_classes!r}."
            )
        if self.num_classes < 1:
            raise ValueError(
                f"Domain set {self.name!r}: num_classes must be >= 1, got {self.num_classes}."
            )
        shapes = {
            f"{d.name}.{s}": tuple(getattr(d, s).x.shape[1:])
            for d in self.domains
            for s in ("train", "test")
        }
        if len(set(shapes.values())) != 1:
            raise ValueError(
                f"Domain set {self.name!r}: per-example shapes differ between domains/splits: "
                f"{shapes}. Build every domain at the same image size and channel count."
            )
        for d in self.domains:
            if len(d.train) == 0:
                raise ValueError(f"Domain set {self.name!r}: domain {d.name!r} has no train data.")
            for s in ("train", "test"):
                y = np.asarray(getattr(d, s).y)
                if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                    bad = y[(y < 0) | (y >= self.num_classes)][0]
                    raise ValueError(
                        f"Domain set {self.name!r}: label {int(bad)} in {d.name}.{s} is out of "
                        f"range; valid labels are 0..{self.num_classes - 1}."
                    )


def in_out_split(
    n: int, *, holdout_fraction: float = HOLDOUT_FRACTION, seed: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """DomainBed's split of one domain into "in" (train) and "out" (validation) examples.

    ``int(holdout_fraction * n)`` examples, drawn uniformly without replacement by
    ``np.random.default_rng(seed)``, are "out"; the rest are "in" (as DomainBed's
    ``misc.split_dataset``; not stratified by class).

    Args:
      n: number of examples.
      holdout_fraction: fraction held out, in ``[0, 1)``.
      seed: seed of ``np.random.default_rng``.

    Returns:
      ``(in_idx, out_idx)``: sorted int64 indices, disjoint, together ``0..n-1``.

    Raises:
      ValueError: for a negative ``n`` or a fraction outside ``[0, 1)``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    check_holdout_fraction(holdout_fraction)
    perm = np.random.default_rng(seed).permutation(int(n))
    n_out = int(holdout_fraction * n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def check_holdout_fraction(holdout_fraction: float) -> float:
    """Returns ``holdout_fraction`` as a float after checking it is in ``[0, 1)``."""
    if isinstance(holdout_fraction, bool) or not isinstance(
        holdout_fraction, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"holdout_fraction must be a number in [0, 1), got {holdout_fraction!r}.")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must lie in [0, 1), got {holdout_fraction}.")
    return float(holdout_fraction)


def split_domain(
    name: str,
    x,
    y: np.ndarray,
    *,
    holdout_fraction: float = HOLDOUT_FRACTION,
    seed: int | Sequence[int],
) -> Domain:
    """A :class:`Domain` of all examples ``(x, y)``, split by :func:`in_out_split`.

    Returns:
      ``Domain(name, train=in split, test=out split)``; examples keep their order.
    """
    in_idx, out_idx = in_out_split(len(y), holdout_fraction=holdout_fraction, seed=seed)
    y = np.asarray(y, np.int32)
    return Domain(name, Split(x[in_idx], y[in_idx]), Split(x[out_idx], y[out_idx]))


def disjoint_subsets(n: int, k: int, *, seed: int | Sequence[int]) -> list[np.ndarray]:
    """Splits ``0..n-1`` into ``k`` disjoint random subsets of (nearly) equal size.

    As DomainBed's ``MultipleEnvironmentMNIST``: a seeded permutation ``perm`` of the
    examples, subset ``i`` is ``perm[i::k]`` (sizes differ by at most one).

    Returns:
      ``k`` sorted int64 index arrays.
    """
    if k < 1 or n < k:
        raise ValueError(f"Cannot split {n} examples into {k} non-empty subsets.")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


def freeze(domain_set: DomainSet) -> DomainSet:
    """Makes every NumPy array of the set read-only (cached sets are shared) and returns it."""
    for d in domain_set.domains:
        for split in (d.train, d.test):
            for a in (split.x, split.y):
                if isinstance(a, np.ndarray):
                    a.flags.writeable = False
    return domain_set


# ----------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class _Entry:
    builder: str | Callable[..., DomainSet]
    description: str


_OFFLINE = "tljax.data.dg_offline"
_PHOTOS = "tljax.data.dg_photos"
_BUILTIN: dict[str, _Entry] = {
    "rotated_digits": _Entry(
        f"{_OFFLINE}:rotated_digits",
        "UCI digits in 6 disjoint subsets rotated by 0, 15, ..., 75 degrees (RotatedMNIST "
        "analogue), 10 classes, 28x28x1",
    ),
    "colored_fashion": _Entry(
        f"{_OFFLINE}:colored_fashion",
        "Fashion-MNIST by DomainBed's ColoredMNIST recipe: environments +90%, +80%, -90%, "
        "2 classes, 14x14x2",
    ),
    "digits_styles": _Entry(
        f"{_OFFLINE}:digits_styles",
        "UCI digits in 4 disjoint subsets drawn in 4 styles: plain, m (MNIST-M blend), "
        "edges (Sobel), thick (dilated), 10 classes, 28x28x3",
    ),
    "pacs": _Entry(
        f"{_PHOTOS}:pacs", "PACS: art_painting, cartoon, photo, sketch; 7 classes (TFDS)"
    ),
    "vlcs": _Entry(
        f"{_PHOTOS}:vlcs", "VLCS: Caltech101, LabelMe, SUN09, VOC2007; 5 classes (TFDS)"
    ),
    "office_home_dg": _Entry(
        f"{_PHOTOS}:office_home_dg",
        "Office-Home: Art, Clipart, Product, Real_World; 65 classes (TFDS)",
    ),
    "terra_incognita": _Entry(
        f"{_PHOTOS}:terra_incognita",
        "TerraIncognita camera traps: location_100, _38, _43, _46; 10 classes (TFDS)",
    ),
    "domainnet_dg": _Entry(
        f"{_PHOTOS}:domainnet_dg",
        "DomainNet: clipart, infograph, painting, quickdraw, real, sketch; 345 classes (TFDS)",
    ),
}
_REGISTERED: dict[str, _Entry] = {}


def register_domain_set(name: str, builder: str | Callable[..., DomainSet], description: str):
    """Adds a domain set (or replaces a registered one).

    Args:
      name: the set's name; must not be a built-in name.
      builder: ``builder(*, data_seed, image_size, **options) -> DomainSet`` or a
        ``"module:function"`` string imported on first use.
      description: one line saying what the set is (for listings and errors).

    Raises:
      ValueError: for a built-in or empty name, or a builder that is neither callable nor
        a ``"module:function"`` string.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A domain set name must be a non-empty string, got {name!r}.")
    if name in _BUILTIN:
        raise ValueError(
            f"The domain set {name!r} is built in and cannot be replaced; register it under "
            "another name."
        )
    if not callable(builder) and not (isinstance(builder, str) and ":" in builder):
        raise ValueError(
            f"builder must be callable or a 'module:function' string, got {builder!r}."
        )
    _REGISTERED[name] = _Entry(builder, str(description))
    _build.cache_clear()


def domain_set_names() -> list[str]:
    """The names :func:`get_domain_set` accepts, sorted (built-in, registered and those of
    installed plug-ins)."""
    return sorted({*_BUILTIN, *_REGISTERED, *_registry.entry_points(ENTRY_POINT_GROUP)})


def _entry(name: str) -> _Entry:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _BUILTIN[name]
    eps = _registry.entry_points(ENTRY_POINT_GROUP)
    if name not in eps:
        raise _registry.unknown_name_error("domain set", name, domain_set_names())
    obj = _registry.load_entry_point(eps[name], "domain set")
    doc = (inspect.getdoc(obj) or "").split("\n")[0]
    _REGISTERED[name] = entry = _Entry(obj, doc or f"entry point {eps[name].value}")
    return entry


def _builder(name: str) -> Callable[..., DomainSet]:
    builder = _entry(name).builder
    return _registry.import_string(builder) if isinstance(builder, str) else builder


def domain_set_description(name: str) -> str:
    """The one-line description of a domain set.

    Raises:
      ValueError: for an unknown name (listing the valid ones).
    """
    return _entry(name).description


def domain_set_options(name: str) -> tuple[str, ...]:
    """The option names the builder of ``name`` accepts (its keyword parameters other
    than ``data_seed`` and ``image_size``), in signature order.

    Raises:
      ValueError: for an unknown name (listing the valid ones).
    """
    params = inspect.signature(_builder(name)).parameters.values()
    return tuple(
        p.name
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in ("data_seed", "image_size")
    )


def get_domain_set(
    name: str, *, data_seed: int = 0, image_size: int | None = None, **options
) -> DomainSet:
    """Builds (or returns the cached) domain set ``name``.

    Args:
      name: one of :func:`domain_set_names`.
      data_seed: seed of every random choice (subsets, shifts, in/out splits), ``>= 0``;
        the same seed rebuilds the same arrays bit for bit.
      image_size: side length of the square images; ``None``: the set's default (28 for
        the digits sets, 14 for ``colored_fashion``, 224 for the photo sets).
      **options: the set's options (:func:`domain_set_options`), e.g.
        ``holdout_fraction`` (default 0.2) for every built-in set.

    Returns:
      The validated set, with read-only arrays. Calls with the same arguments return the
      same object (the last two sets built are cached).

    Raises:
      ValueError: for an unknown name (listing the valid ones) or a bad seed, size or
        option value.
      TypeError: for an option the set does not take (listing the valid ones).
      FileNotFoundError: if the set's data is not installed or prepared (for the photo
        sets the subclass :class:`~tljax.data.benchmarks.DatasetNotFoundError`), saying
        what to fetch and where to put it.
    """
    builder = _builder(name)
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ValueError(f"data_seed must be a non-negative integer, got {data_seed!r}.")
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or image_size < 1
    ):
        raise ValueError(f"image_size must be None or a positive integer, got {image_size!r}.")
    params = inspect.signature(builder).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        valid = domain_set_options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise TypeError(
                f"Domain set {name!r} got unexpected option(s) {unknown}; valid options: "
                f"{list(valid)}."
            )
    options = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
    image_size = None if image_size is None else int(image_size)
    key = tuple(sorted(options.items()))
    try:
        hash(key)
    except TypeError:  # unhashable option values: build without caching
        return _make(name, int(data_seed), image_size, options)
    return _build(name, int(data_seed), image_size, key)


# Two sets at a time: a photo set takes gigabytes; repeated builds (seeds, tests) hit.
@functools.lru_cache(maxsize=2)
def _build(name: str, data_seed: int, image_size: int | None, options: tuple) -> DomainSet:
    return _make(name, data_seed, image_size, dict(options))


def _make(name: str, data_seed: int, image_size: int | None, options: dict) -> DomainSet:
    domain_set = _builder(name)(data_seed=data_seed, image_size=image_size, **options)
    if not isinstance(domain_set, DomainSet):
        raise TypeError(
            f"The builder of domain set {name!r} returned {type(domain_set).__name__}, "
            "expected a DomainSet."
        )
    domain_set.validate()
    return freeze(domain_set)


def summary(domain_set: DomainSet) -> str:
    """A few lines describing a set: its domains, split sizes, shapes and dtypes."""
    first = domain_set.domains[0].train.x
    lines = [
        f"{domain_set.name}: {len(domain_set.domains)} domains, {domain_set.num_classes} "
        f"classes, examples {tuple(first.shape[1:])} {np.dtype(first.dtype).name}"
    ]
    for d in domain_set.domains:
        counts = np.bincount(np.concatenate([d.train.y, d.test.y]), minlength=1)
        lines.append(
            f"  {d.name:>14s}: in {len(d.train):6d}  out {len(d.test):6d}  "
            f"per class min {counts.min()} max {counts.max()}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m tljax.data.domain_sets list`` or ``... show NAME [--data_seed S]
    [--image_size N] [--option key=value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m tljax.data.domain_sets")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the domain sets and what they are")
    show = commands.add_parser("show", help="build a set and print its domains and sizes")
    show.add_argument("name")
    show.add_argument("--data_seed", type=int, default=0)
    show.add_argument("--image_size", type=int, default=None)
    show.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in domain_set_names():
            print(f"{name:18s} {domain_set_description(name)}")
        return
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = int(value)
        except ValueError:
            try:
                options[key] = float(value)
            except ValueError:
                options[key] = value
    domain_set = get_domain_set(
        args.name, data_seed=args.data_seed, image_size=args.image_size, **options
    )
    print(summary(domain_set))


if __name__ == "__main__":
    # Run the imported module's main: the builders' DomainSet is that module's class.
    from tljax.data import domain_sets as _module

    _module.main()

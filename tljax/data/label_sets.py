"""Label-set mismatch as a property of a task: partial, open-set and universal variants.

Any registered task (``digits->digits_m``, ``fashion->fashion_m``, benchmark pairs such as
``office31/amazon->office31/webcam``, ...) gets three families of names, resolved on
demand (a resolver that :mod:`tljax.data.tasks` lists and imports on first use):

* ``"partial/<task>"``: the target keeps only ``shared`` classes (seeded draw of
  ``shared`` classes with ``label_seed``, or the published list for Office-31 / Office-Home);
  the source keeps all of them.
* ``"open_set/<task>"``: the source keeps the first ``shared`` classes; the target keeps
  them too and every other class it has (or the ``target_private`` ones) becomes one
  ``unknown`` label, ``= shared``. ``num_classes = shared + 1`` (a K+1-way head; the source
  never shows the unknown label).
* ``"universal/<task>"``: shared classes first, then ``source_private`` classes the target
  lacks (source only), then the target's private classes, all mapped to ``unknown``.

Labels are renumbered: the shared classes are ``0..k-1`` (in the order of
:attr:`LabelSetTask.source_classes`), the source-private ones follow, and ``unknown`` (if
any) is the last label. The returned :class:`LabelSetTask` records the setting and the
original class ids, so the evaluation (:mod:`tljax.evaluate_label_sets`) picks the metric:
mean-class accuracy over the target's classes (partial), OS*/UNK/OS/HOS (open-set),
H-score (universal).

Options: ``shared``, ``source_private``, ``target_private`` (a count: the next classes in
order, or an explicit tuple of original class ids), ``label_seed`` (partial's seeded draw;
``None`` → the first ``shared`` classes), and every option of the wrapped task. Defaults
on 10-class tasks: partial keeps 5 classes (seeded), open-set shares 6 (classes 6-9 are
unknown), universal shares 4, 3 source-private, 3 target-private (unknown).

Published protocols (used when the wrapped task is an Office benchmark pair and no
classes are given): Office-31 partial: the 10 classes shared with Caltech-256
(Cao et al. 2018; TLlib); Office-Home partial: the first 25 classes alphabetically;
Office-31 open-set: the first 10 classes shared, the last 11 (classes 21-31
alphabetically) unknown in the target, classes 11-20 unused (Saito et al. 2018, OSBP);
Office-31 universal (UAN, You et al. 2019): 10 shared, 10 source-private, 11
target-private. A missing dataset raises the benchmark loader's
:class:`~tljax.data.benchmarks.DatasetNotFoundError` unchanged.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tljax.data import tasks as _tasks
from tljax.data.benchmarks.builders.office import OFFICE31_CLASSES, OFFICE_HOME_CLASSES
from tljax.data.core import Domain, Split, Task

SETTINGS = ("partial", "open_set", "universal")

# Office-31 partial: the 10 classes shared with Caltech-256 (SAN/PADA; TLlib).
OFFICE31_PARTIAL = (
    "back_pack", "bike", "calculator", "headphones", "keyboard",
    "laptop_computer", "monitor", "mouse", "mug", "projector",
)  # fmt: skip
# Office-Home partial: the first 25 classes in alphabetical order (PADA; TLlib).
OFFICE_HOME_PARTIAL = tuple(sorted(OFFICE_HOME_CLASSES)[:25])
# Office-31 open-set (OSBP): classes 0-9 shared, 20-30 unknown in the target; universal
# (UAN): 0-9 shared, 10-19 source-private, 20-30 target-private (ids in OFFICE31_CLASSES).

OPTIONS = ("shared", "source_private", "target_private", "label_seed")


@dataclasses.dataclass(frozen=True)
class LabelSetTask(Task):
    """A task whose source and target label sets differ.

    Attributes (besides :class:`~tljax.data.core.Task`'s):
      setting: ``"partial"``, ``"open_set"`` or ``"universal"``.
      shared: the new label ids of the classes both domains have (``0..k-1``).
      source_private: new label ids of the source's classes the target lacks.
      unknown_label: the target's label of every class the source lacks (``None`` for
        partial, where there are none).
      source_classes: original class id of each new source label (``shared`` first).
      target_private: original class ids that became ``unknown_label``.
      base: the wrapped task's name.
    """

    setting: str = "partial"
    shared: tuple[int, ...] = ()
    source_private: tuple[int, ...] = ()
    unknown_label: int | None = None
    source_classes: tuple[int, ...] = ()
    target_private: tuple[int, ...] = ()
    base: str = ""

    @property
    def known(self) -> tuple[int, ...]:
        """All labels the source shows: ``shared + source_private``."""
        return self.shared + self.source_private

    @property
    def target_classes(self) -> tuple[int, ...]:
        """The labels that occur in the target: the shared ones, then ``unknown_label``."""
        return self.shared + (() if self.unknown_label is None else (self.unknown_label,))


def parse(name: str) -> tuple[str, str] | None:
    """``"partial/digits->digits_m"`` → ``("partial", "digits->digits_m")``, else None."""
    if not isinstance(name, str) or "/" not in name:
        return None
    setting, base = name.split("/", 1)
    if setting not in SETTINGS or not base:
        return None
    return setting, base


def _base_options(base: str) -> tuple[tuple[str, ...], bool]:
    """The wrapped task's option names and whether it takes ``image_size``."""
    spec = _tasks._REGISTERED.get(base)
    if spec is None and base in _tasks._TASKS:
        entry = _tasks._TASKS[base]
        if entry is None:
            return _tasks._OPTIONS["moons"], False
        return _tasks._OPTIONS[entry[0]] + _tasks._OPTIONS.get(entry[1], ()), True
    if spec is None:
        spec = _tasks._from_entry_point(base) or _tasks._resolve(base)
    if spec is None:
        raise ValueError(
            f"Unknown task {base!r} inside a label-set name; expected '<setting>/<task>' "
            f"with setting in {SETTINGS} and a task of tljax.data.task_names()."
        )
    return spec.options, True


def resolve(name: str) -> _tasks.RegisteredTask | None:
    """The resolver registered in :mod:`tljax.data.tasks` for ``<setting>/<task>``."""
    parsed = parse(name)
    if parsed is None:
        return None
    base_options, _ = _base_options(parsed[1])
    clash = set(base_options) & set(OPTIONS)
    if clash:
        raise ValueError(f"Task {parsed[1]!r} has options {sorted(clash)} of label-set tasks.")
    return _tasks.RegisteredTask(build, OPTIONS + tuple(base_options), takes_image_size=True)


def _office(base: str) -> str | None:
    parts = base.split("->")
    if len(parts) == 2 and all(p.startswith("office31/") for p in parts):
        return "office31"
    if len(parts) == 2 and all(p.startswith("office_home/") for p in parts):
        return "office_home"
    return None


def _ids(names: tuple[str, ...], all_names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(all_names.index(n) for n in names)


def _classes(
    setting: str, base: str, num_classes: int, shared, source_private, target_private, label_seed
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(shared, source_private, target_private) as original class ids."""
    office = _office(base)
    given = shared is not None or source_private is not None or target_private is not None
    if office is not None and not given:
        if setting == "partial":
            if office == "office31":
                s = _ids(OFFICE31_PARTIAL, OFFICE31_CLASSES)
            else:
                s = _ids(OFFICE_HOME_PARTIAL, OFFICE_HOME_CLASSES)
            return s, tuple(c for c in range(num_classes) if c not in s), ()
        if office == "office31" and setting == "open_set":
            return tuple(range(10)), (), tuple(range(20, 31))
        if office == "office31":
            return tuple(range(10)), tuple(range(10, 20)), tuple(range(20, 31))
    all_classes = list(range(num_classes))

    def take(spec, default, remaining):
        if spec is None:
            spec = default
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            if not 0 <= spec <= len(remaining):
                raise ValueError(
                    f"Asked for {spec} classes but only {len(remaining)} are left "
                    f"(task {base!r} has {num_classes} classes)."
                )
            return tuple(remaining[: int(spec)])
        ids = tuple(int(c) for c in spec)
        bad = [c for c in ids if c not in remaining]
        if bad or len(set(ids)) != len(ids):
            raise ValueError(
                f"Classes {list(ids)} must be distinct ids in 0..{num_classes - 1} and not "
                f"used twice across shared/source_private/target_private."
            )
        return ids

    defaults = {
        "partial": (max(1, num_classes // 2), None, 0),
        "open_set": (max(1, (num_classes * 3) // 5), 0, None),
        "universal": (max(1, (num_classes * 2) // 5), (num_classes * 3) // 10, None),
    }[setting]
    order = all_classes
    count = isinstance(shared, (int, np.integer)) and not isinstance(shared, bool)
    if setting == "partial" and (shared is None or count) and label_seed is not None:
        k = defaults[0] if shared is None else min(int(shared), num_classes)
        rng = np.random.default_rng([int(label_seed), 7])
        order = sorted(rng.permutation(num_classes)[:k].tolist())
        order += [c for c in all_classes if c not in order]
    s = take(shared, defaults[0], order)
    rest = [c for c in order if c not in s]
    if setting == "partial":
        if target_private not in (None, 0, ()):
            raise ValueError("A partial task has no target-private classes.")
        sp = take(source_private, len(rest), rest)
        return s, sp, ()
    if setting == "open_set" and source_private not in (None, 0, ()):
        raise ValueError("An open-set task has no source-private classes; use universal/.")
    sp = take(source_private, defaults[1], rest)
    rest = [c for c in rest if c not in sp]
    tp = take(target_private, len(rest), rest)
    if not s:
        raise ValueError("A label-set task needs at least one shared class.")
    if setting != "partial" and not tp:
        raise ValueError(f"A {setting} task needs at least one target-private class.")
    return s, sp, tp


def build(
    name: str,
    *,
    data_seed: int,
    image_size: int = 28,
    shared=None,
    source_private=None,
    target_private=None,
    label_seed: int | None = 0,
    **base_options,
) -> LabelSetTask:
    """Builds ``"<setting>/<task>"`` (the factory behind the resolver; see the module doc).

    Raises:
      ValueError: for a bad name or class choice; the wrapped task's errors unchanged
        (e.g. ``DatasetNotFoundError`` for an Office pair that is not prepared).
    """
    parsed = parse(name)
    if parsed is None:
        raise ValueError(f"{name!r} is not '<setting>/<task>' with setting in {SETTINGS}.")

    def freeze(v):
        return tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v

    return _build(
        name,
        int(data_seed),
        int(image_size),
        freeze(shared),
        freeze(source_private),
        freeze(target_private),
        label_seed,
        tuple(sorted(base_options.items())),
    )


@functools.lru_cache(maxsize=8)
def _build(
    name, data_seed, image_size, shared, source_private, target_private, label_seed, base_opts
) -> LabelSetTask:
    setting, base = parse(name)
    _, takes_size = _base_options(base)
    kwargs = dict(base_opts)
    if takes_size:
        kwargs["image_size"] = image_size
    inner = _tasks.get_task(base, data_seed=data_seed, **kwargs)
    s, sp, tp = _classes(
        setting, base, inner.num_classes, shared, source_private, target_private, label_seed
    )
    source_classes = s + sp
    k = len(s)
    unknown = None if setting == "partial" else len(source_classes)
    num_classes = len(source_classes) + (0 if unknown is None else 1)
    src_map = np.full(inner.num_classes, -1, np.int64)
    src_map[list(source_classes)] = np.arange(len(source_classes))
    tgt_map = np.full(inner.num_classes, -1, np.int64)
    tgt_map[list(s)] = np.arange(k)
    if tp:
        tgt_map[list(tp)] = unknown

    def relabel(split: Split, mapping: np.ndarray) -> Split:
        y = mapping[split.y]
        keep = y >= 0
        out = Split(split.x[keep], y[keep].astype(np.int32))
        out.x.flags.writeable = False
        out.y.flags.writeable = False
        return out

    def domain(d: Domain, mapping: np.ndarray) -> Domain:
        return Domain(d.name, relabel(d.train, mapping), relabel(d.test, mapping))

    task = LabelSetTask(
        name=name,
        source=domain(inner.source, src_map),
        target=domain(inner.target, tgt_map),
        num_classes=num_classes,
        setting=setting,
        shared=tuple(range(k)),
        source_private=tuple(range(k, len(source_classes))),
        unknown_label=unknown,
        source_classes=tuple(int(c) for c in source_classes),
        target_private=tuple(int(c) for c in tp),
        base=base,
    )
    task.validate()
    return task


_DESCRIPTION = (
    "'<partial|open_set|universal>/<task>' for a label-set variant of any task "
    "(tljax.data.label_sets)"
)
# tljax.data.tasks lists "tljax.data.label_sets:resolve" among its resolvers (imported on
# first use), so these names work without importing this module first.

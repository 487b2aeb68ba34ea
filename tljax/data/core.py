"""Containers for domains and transfer tasks, held in host memory as NumPy arrays.

Images are float32 NHWC in [0, 1] (or any float features for the toys); labels are
int32 in ``[0, num_classes)``. Every domain keeps its train and test splits apart: a
method trains on ``source.train`` (labels) and ``target.train`` (images only) and the
reported numbers say which test split they come from.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of one domain: inputs ``x`` of shape ``(n, ...)`` and labels ``y`` ``(n,)``."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels; "
                "they must have the same length."
            )
        if self.y.ndim != 1:
            raise ValueError(f"Labels must be a 1-D array, got shape {self.y.shape}.")

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclasses.dataclass(frozen=True)
class Domain:
    """A named domain with train and test splits."""

    name: str
    train: Split
    test: Split


@dataclasses.dataclass(frozen=True)
class Task:
    """A transfer task: a labeled source domain and a target domain.

    Attributes:
      name: e.g. ``"digits->digits_m"``.
      source: the labeled domain.
      target: the domain to adapt to; its train labels are never given to a method.
      num_classes: number of classes shared by both domains.
    """

    name: str
    source: Domain
    target: Domain
    num_classes: int

    def validate(self) -> None:
        """Checks shapes and label ranges of both domains.

        Raises:
          ValueError: if the domains' input shapes differ or a label is outside
            ``[0, num_classes)``.
        """
        shapes = {
            f"{d.name}.{s}": getattr(d, s).x.shape[1:]
            for d in (self.source, self.target)
            for s in ("train", "test")
        }
        if len(set(shapes.values())) != 1:
            raise ValueError(
                f"Task {self.name!r}: input shapes differ between domains/splits: {shapes}. "
                "Resize or pad one domain so both have the same per-example shape."
            )
        for d in (self.source, self.target):
            for s in ("train", "test"):
                y = getattr(d, s).y
                if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                    bad = y[(y < 0) | (y >= self.num_classes)][0]
                    raise ValueError(
                        f"Task {self.name!r}: label {int(bad)} in {d.name}.{s} is out of "
                        f"range; valid labels are 0..{self.num_classes - 1}."
                    )


def standardize(task: Task) -> tuple[Task, np.ndarray, np.ndarray]:
    """Standardises every split of both domains with the source train split's statistics.

    Per-channel mean and standard deviation are computed on ``source.train`` only (the
    target's statistics are not used), as pixel-mean subtraction in the DANN paper.

    Returns:
      ``(task, mean, std)``: the standardised task and the statistics used.
    """
    x = task.source.train.x
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = np.maximum(x.std(axis=axes, dtype=np.float64), 1e-6)

    def split(s: Split) -> Split:
        return Split(((s.x - mean) / std).astype(np.float32), s.y)

    def domain(d: Domain) -> Domain:
        train = split(d.train)
        # A domain without an official test split (Office) keeps one array for both.
        return Domain(d.name, train, train if d.test is d.train else split(d.test))

    # replace, not Task(...): a subclass (a LabelSetTask's class maps) keeps its fields.
    return (
        dataclasses.replace(task, source=domain(task.source), target=domain(task.target)),
        mean.astype(np.float32),
        std.astype(np.float32),
    )


def hold_out(split: Split, fraction: float, *, seed: int) -> tuple[Split, Split]:
    """Splits off a seeded, class-stratified ``fraction`` of ``split`` for validation.

    Returns:
      ``(rest, held_out)``; with ``fraction == 0`` the held-out split is empty.
    """
    rng = np.random.default_rng([seed, 7])
    val = []
    for c in np.unique(split.y):
        idx = np.flatnonzero(split.y == c)
        k = int(round(fraction * len(idx)))
        val.extend(rng.permutation(idx)[:k])
    val = np.sort(np.asarray(val, dtype=np.int64))
    keep = np.setdiff1d(np.arange(len(split)), val)
    return Split(split.x[keep], split.y[keep]), Split(split.x[val], split.y[val])


def few_label_indices(split: Split, per_class: int, *, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset with ``per_class`` examples of each class (all
    of a class if it has fewer)."""
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}.")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    rng = np.random.default_rng([seed, 11])
    keep = []
    for c in np.unique(split.y):
        idx = np.flatnonzero(split.y == c)
        keep.extend(rng.permutation(idx)[:per_class])
    return np.sort(np.asarray(keep, dtype=np.int64))


def few_labels(split: Split, per_class: int, *, seed: int) -> Split:
    """A seeded subset with ``per_class`` examples of each class (all if fewer)."""
    keep = few_label_indices(split, per_class, seed=seed)
    return Split(split.x[keep], split.y[keep])


def split_target_labels(task: Task, per_class: int, *, seed: int) -> tuple[Task, Split]:
    """Takes a labelled target subset for semi-supervised adaptation.

    ``per_class`` examples of each class are drawn (seeded, as :func:`few_labels`) from
    ``task.target.train`` and removed from it: the returned task's target train split is
    the unlabelled pool (whose labels no method sees), the returned split the labelled
    examples. A target domain without an official test split (``test is train``, e.g.
    Office-31) is evaluated on the unlabelled pool, so the labelled examples are never
    scored (as in the semi-supervised protocol of Saito et al., 2019).

    Returns:
      ``(task, labeled)``.

    Raises:
      ValueError: for a single-domain task (the target is the source), or when no
        unlabelled target example would be left.
    """
    target = task.target
    if target is task.source or target.name == task.source.name:
        raise ValueError(
            f"Task {task.name!r} has no separate target domain (its target is the source "
            f"{task.source.name!r}); a labelled target subset needs a transfer task "
            "'source->target'."
        )
    keep = few_label_indices(target.train, per_class, seed=seed)
    rest = np.setdiff1d(np.arange(len(target.train)), keep)
    if rest.size == 0:
        raise ValueError(
            f"Taking {per_class} labelled examples per class leaves no unlabelled example "
            f"of {target.name!r} ({len(target.train)} train examples); use fewer."
        )
    labeled = Split(target.train.x[keep], target.train.y[keep])
    pool = Split(target.train.x[rest], target.train.y[rest])
    test = pool if target.test is target.train else target.test
    return dataclasses.replace(task, target=Domain(target.name, pool, test)), labeled

"""Transfer tasks from your own arrays: a labelled source, an unlabelled target.

    task = from_arrays(source=(x_s, y_s), target=x_t, target_test=(x_tt, y_tt), name="mine")

:func:`from_arrays` returns an ordinary :class:`~tljax.data.core.Task`; a config file
registers one in a line with :func:`register_arrays` and names it in ``data.task``::

    # my_config.py
    from tljax.config import base_config
    from tljax.data import register_arrays

    def get_config():
        register_arrays("mine", source=("xs.npy", "ys.npy"), target="xt.npy")
        c = base_config()
        c.data.task = "mine"
        c.model.backbone = "mlp"
        return c

**The target needs no labels.** A :class:`~tljax.data.core.Split` always holds labels,
so the target train split stores the placeholder :data:`UNLABELED` (``-1``) for each
example. Nothing in the trainer reads them: the target stream yields images only
(:class:`~tljax.data.stream.DomainPairStream`, ``with_labels=False``), the model-selection
scores use the target train split's inputs only, and the target *test* split is a
separate one. Asking for target labels anyway (``data.target_labels_per_class``) is an
error (:func:`tljax.loop.build`). The returned task is an :class:`ArrayTask`, whose
:meth:`~ArrayTask.validate` accepts the placeholder in ``target.train`` only.

**No target test split** (``target_test=None``): ``target.test`` is an empty split and the
trainer skips the target test evaluation (``results.json`` then has no
``target_test_acc``; the unsupervised selection scores are still logged).

**The source test split** is ``source_test`` if given, else a seeded, class-stratified
``holdout`` fraction of ``source`` (:func:`tljax.data.core.hold_out`), so source test
accuracy is never measured on training examples.

Inputs: float arrays become float32 (the MLP/toy path; ``data.standardize`` standardises
them with source-train statistics); integer arrays (uint8 images, token ids) keep their
dtype. Labels must be integers in ``[0, num_classes)``; map other label values first
(``classes, y = np.unique(y_raw, return_inverse=True)``), as
:class:`tljax.sklearn.DomainAdaptationClassifier` does. The arrays are copied and made
read-only, as those of the built-in tasks.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tljax.data.core import Domain, Split, Task, hold_out

UNLABELED = -1
"""The placeholder label of every example of an unlabelled target train split."""


@dataclasses.dataclass(frozen=True)
class ArrayTask(Task):
    """A :class:`Task` built by :func:`from_arrays`; its target train split may be
    unlabelled (all labels :data:`UNLABELED`)."""

    def __repr__(self) -> str:  # the arrays' values would fill a screen
        def split(s):
            return f"{len(s)}{'' if not is_unlabeled(s) else ' unlabelled'}"

        return (
            f"ArrayTask(name={self.name!r}, num_classes={self.num_classes}, inputs "
            f"{self.source.train.x.shape[1:]} {self.source.train.x.dtype}, "
            + ", ".join(
                f"{d.name}: train {split(d.train)} / test {split(d.test)}"
                for d in (self.source, self.target)
            )
            + ")"
        )

    def validate(self) -> None:
        """As :meth:`Task.validate`, with an unlabelled ``target.train`` accepted.

        Raises:
          ValueError: if shapes differ or a label is out of range.
        """
        y = self.target.train.y
        if y.size and (y == UNLABELED).all():
            # Check the rest with a stand-in target train split of valid labels.
            train = Split(self.target.train.x, np.zeros_like(y))
            target = dataclasses.replace(self.target, train=train)
            Task(self.name, self.source, target, self.num_classes).validate()
        else:
            Task.validate(self)


def is_unlabeled(split: Split) -> bool:
    """Whether ``split`` holds :data:`UNLABELED` placeholders instead of labels."""
    return bool(split.y.size) and bool((np.asarray(split.y) == UNLABELED).all())


def _load(value, what: str) -> np.ndarray:
    """``value`` as an array; a ``str``/``PathLike`` is a ``.npy`` file to load."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not path.endswith(".npy"):
            raise ValueError(f"{what}: a path must name a .npy file, got {path!r}.")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{what}: no such file {path!r}.")
        return np.load(path, allow_pickle=False)
    try:
        return np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{what} cannot be converted to an array: {e}") from e


def _inputs(value, what: str) -> np.ndarray:
    x = _load(value, what)
    if x.ndim < 2:
        raise ValueError(
            f"{what} must have shape (n_examples, ...) with at least 2 dimensions, got shape "
            f"{x.shape}; for 1 feature per example use x.reshape(-1, 1)."
        )
    if x.shape[0] < 1:
        raise ValueError(f"{what} has no examples (shape {x.shape}).")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(
                f"{what} has a non-finite value ({x[tuple(bad)]}) at index {tuple(bad)}."
            )
    elif np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_:
        x = x.copy()
    else:
        raise ValueError(
            f"{what} has dtype {x.dtype}; valid: floating point (converted to float32) or "
            "integer (uint8 images, token ids)."
        )
    return x


def _labels(value, n: int, what: str) -> np.ndarray:
    y = _load(value, what)
    if y.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of labels, got shape {y.shape}.")
    if y.shape[0] != n:
        raise ValueError(f"{what} has {y.shape[0]} labels for {n} inputs; they must match.")
    if y.dtype == np.bool_ or not (
        np.issubdtype(y.dtype, np.integer)
        or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
    ):
        raise ValueError(
            f"{what} has dtype {y.dtype} (e.g. {y[:3].tolist()}); labels must be integers "
            "0..K-1. Map other values first: classes, y = np.unique(y, return_inverse=True)."
        )
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(
            f"{what} holds the negative label {int(y.min())}; labels must be integers 0..K-1."
        )
    return y.astype(np.int32)


def _pair(value, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        size = f" of length {len(value)}" if hasattr(value, "__len__") else ""
        raise ValueError(
            f"{what} must be a pair (x, y) of inputs and labels, got {type(value).__name__}{size}."
        )
    x = _inputs(value[0], f"{what}[0] (inputs)")
    return x, _labels(value[1], x.shape[0], f"{what}[1] (labels)")


def _read_only(split: Split) -> Split:
    split.x.flags.writeable = False
    split.y.flags.writeable = False
    return split


def from_arrays(
    *,
    source,
    target,
    source_test=None,
    target_test=None,
    name: str = "arrays",
    num_classes: int | None = None,
    holdout: float = 0.1,
    seed: int = 0,
    source_name: str = "source",
    target_name: str = "target",
) -> ArrayTask:
    """Builds a transfer task from in-memory arrays (or ``.npy`` files).

    Args:
      source: ``(x, y)``: labelled source inputs ``(n, ...)`` and integer labels ``(n,)``.
      target: unlabelled target inputs ``(m, ...)`` (same per-example shape), or a tuple
        ``(x, y)`` whose labels are dropped (kept out of the task: no method sees them).
      source_test: ``(x, y)`` source test split; ``None``: held out of ``source``.
      target_test: ``(x, y)`` labelled target test split; ``None``: none (target test
        evaluation is skipped).
      name: the task's name (``task.name``, shown in results).
      num_classes: number of classes; ``None``: ``1 + the largest label`` seen.
      holdout: fraction of ``source`` held out (seeded, stratified by class) as the
        source test split when ``source_test`` is ``None``; in ``(0, 1)``. Ignored
        otherwise.
      seed: seed of that hold-out.
      source_name, target_name: the domains' names.

    Returns:
      An :class:`ArrayTask` with read-only copies of the arrays; ``target.train`` has
      :data:`UNLABELED` labels.

    Raises:
      ValueError: a bad shape, dtype, label, fraction or class count (the message names
        the argument, the bad value and what is valid).
      FileNotFoundError: a ``.npy`` path that does not exist.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    xs, ys = _pair(source, "source")
    if isinstance(target, tuple) and len(target) == 2:
        target = target[0]  # (x, y): the labels are not used
    xt = _inputs(target, "target")
    test_s = _pair(source_test, "source_test") if source_test is not None else None
    test_t = _pair(target_test, "target_test") if target_test is not None else None
    shapes = {"source": xs.shape[1:], "target": xt.shape[1:]}
    if test_s is not None:
        shapes["source_test"] = test_s[0].shape[1:]
    if test_t is not None:
        shapes["target_test"] = test_t[0].shape[1:]
    if len(set(shapes.values())) != 1:
        raise ValueError(
            f"Task {name!r}: per-example input shapes differ: {shapes}; every split must "
            "have the same shape after the first (example) axis."
        )
    dtypes = {"source": xs.dtype, "target": xt.dtype}
    if len({np.issubdtype(d, np.floating) for d in dtypes.values()}) != 1:
        raise ValueError(
            f"Task {name!r}: source and target inputs must both be float or both integer, "
            f"got {dtypes}."
        )
    labels = [ys] + [t[1] for t in (test_s, test_t) if t is not None]
    seen = max(int(y.max()) for y in labels if y.size) + 1
    if num_classes is None:
        num_classes = seen
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an integer >= 2 or None, got {num_classes!r}.")
    if num_classes < 2:
        raise ValueError(
            f"num_classes must be >= 2, got {num_classes}"
            + (" (inferred: every label is 0)." if seen == num_classes else ".")
        )
    if seen > num_classes:
        raise ValueError(
            f"Task {name!r}: label {seen - 1} is out of range for num_classes={num_classes}; "
            f"valid labels are 0..{num_classes - 1}."
        )
    train = Split(xs, ys)
    if test_s is None:
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)):
            raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout!r}.")
        if not 0 < holdout < 1:
            raise ValueError(
                f"holdout must be in (0, 1) when no source_test is given, got {holdout!r}."
            )
        train, test = hold_out(train, float(holdout), seed=int(seed))
        if len(test) == 0 or len(train) == 0:
            raise ValueError(
                f"holdout={holdout} of the {len(xs)} source examples leaves "
                f"{len(train)} to train on and {len(test)} to test; give more examples, "
                "another fraction, or source_test."
            )
    else:
        test = Split(*test_s)
    t_train = Split(xt, np.full(xt.shape[0], UNLABELED, np.int32))
    if test_t is None:
        t_test = Split(xt[:0], np.zeros(0, np.int32))
    else:
        t_test = Split(*test_t)
    task = ArrayTask(
        name,
        Domain(source_name, _read_only(train), _read_only(test)),
        Domain(target_name, _read_only(t_train), _read_only(t_test)),
        int(num_classes),
    )
    task.validate()
    return task


def register_arrays(name: str, *, seed: int | None = None, **from_arrays_kwargs) -> None:
    """Registers the task :func:`from_arrays` builds under ``name`` (one line in a
    config file; then ``c.data.task = name``).

    The arrays (or ``.npy`` paths, loaded when the task is first built) are kept by the
    registry; the task is built (and checked) when a run asks for it and cached per
    ``data_seed``. Registering ``name`` again replaces it.

    Args:
      name: the task name, not a built-in one.
      seed: the hold-out seed; ``None``: the run's ``config.data.data_seed``.
      **from_arrays_kwargs: the arguments of :func:`from_arrays` (``source``,
        ``target``, ``source_test``, ``target_test``, ``num_classes``, ``holdout``, ...;
        ``name`` defaults to the registered name).

    Raises:
      TypeError: for an argument :func:`from_arrays` does not take.
      ValueError: for a built-in task name.
    """
    import inspect

    from tljax.data import tasks

    valid = set(inspect.signature(from_arrays).parameters) - {"seed"}
    unknown = sorted(set(from_arrays_kwargs) - valid)
    if unknown:
        raise TypeError(
            f"register_arrays({name!r}) got unexpected argument(s) {unknown}; valid: "
            f"{sorted(valid | {'seed'})}."
        )
    missing = sorted({"source", "target"} - set(from_arrays_kwargs))
    if missing:
        raise TypeError(f"register_arrays({name!r}) needs {missing}.")
    kwargs = {"name": name, **from_arrays_kwargs}
    cache: dict[int, ArrayTask] = {}

    def factory(task_name: str, *, data_seed: int) -> ArrayTask:
        s = data_seed if seed is None else seed
        if s not in cache:
            cache[s] = from_arrays(seed=int(s), **kwargs)
        return cache[s]

    tasks.register_task(name, factory)

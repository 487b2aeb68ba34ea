"""Metrics of label-set mismatch, chosen by the task (:class:`~tljax.data.label_sets.LabelSetTask`).

All take integer labels and predictions (``predict_labels`` turns logits into them), so
they are plain NumPy and test against hand-computed examples:

* partial: ``partial_accuracy`` -- mean over the target's classes of the per-class accuracy
  (a prediction of a source-private class counts as wrong);
* open-set: ``open_set_scores`` -- OS* (mean-class accuracy over the known/shared classes),
  UNK (accuracy on the unknown samples), OS (mean over the known classes and unknown:
  ``(k·OS* + UNK)/(k+1)``), HOS (harmonic mean of OS* and UNK; Bucci et al. 2020);
* universal: ``h_score`` -- harmonic mean of the mean-class accuracy over the shared classes
  and the accuracy on the unknown samples (Fu et al. 2020, CMU; as TLlib computes it).

A class absent from ``y_true`` is left out of a mean; a mean over nothing is NaN.
:func:`task_metrics` returns the dict a task's setting asks for.

In training runs (:mod:`tljax.loop`), every evaluation of a label-set task logs
:func:`evaluation_metrics` of the target test split (``metrics.jsonl``, ``results.json``
and, at each rule's step, ``by_selection_rule``): the keys of :data:`SETTING_METRICS`
prefixed ``target_test_`` (``target_test_partial_accuracy``; ``target_test_os_star``,
``_unk``, ``_os``, ``_hos``; ``target_test_h_score`` and the same four), from the
arg-max of the logits or the method's own rule (``Method.predict``, e.g. UAN's
threshold), and ``target_test_unknown_rate``, the fraction predicted unknown.
"""

from __future__ import annotations

import numpy as np


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, classes) -> np.ndarray:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of the same length, got {y_true.shape} and "
            f"{y_pred.shape}."
        )
    out = np.full(len(classes), np.nan)
    for i, c in enumerate(classes):
        mask = y_true == c
        if mask.any():
            out[i] = float(np.mean(y_pred[mask] == c))
    return out


def _nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def _harmonic(a: float, b: float) -> float:
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else float(2 * a * b / (a + b))


def partial_accuracy(y_true, y_pred, target_classes) -> float:
    """Mean over ``target_classes`` present in ``y_true`` of the per-class accuracy."""
    return _nanmean(_per_class(y_true, y_pred, tuple(target_classes)))


def open_set_scores(y_true, y_pred, known, unknown_label: int) -> dict[str, float]:
    """OS*, UNK, OS and HOS (see the module doc) of integer labels and predictions.

    Args:
      known: the known (shared) labels of the target.
      unknown_label: the label of every unknown sample (and the unknown prediction).
    """
    known = tuple(int(c) for c in known)
    if unknown_label in known:
        raise ValueError(f"unknown_label {unknown_label} is one of the known labels {known}.")
    acc_known = _per_class(y_true, y_pred, known)
    unk = float(_per_class(y_true, y_pred, (unknown_label,))[0])
    os_star = _nanmean(acc_known)
    os_all = _nanmean(np.append(acc_known, unk))
    return {"os_star": os_star, "unk": unk, "os": os_all, "hos": _harmonic(os_star, unk)}


def h_score(y_true, y_pred, shared, unknown_label: int) -> float:
    """Harmonic mean of the shared classes' mean-class accuracy and the unknown accuracy."""
    s = open_set_scores(y_true, y_pred, shared, unknown_label)
    return s["hos"]


def predict_labels(logits, *, unknown_label: int | None = None, threshold: float | None = None):
    """Arg-max predictions; with ``threshold``, a sample whose top softmax probability over
    the labels other than ``unknown_label`` is below it is predicted ``unknown_label`` (the
    usual way to give a closed-set model an unknown class)."""
    logits = np.asarray(logits, np.float64)
    if threshold is None:
        return logits.argmax(-1)
    if unknown_label is None:
        raise ValueError("threshold needs unknown_label.")
    if unknown_label < logits.shape[-1]:
        logits = np.delete(logits, unknown_label, axis=-1)
        closed = logits.argmax(-1)
        closed = np.where(closed >= unknown_label, closed + 1, closed)
    else:
        closed = logits.argmax(-1)
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return np.where(p.max(-1) < threshold, unknown_label, closed)


def task_metrics(task, y_true, y_pred) -> dict[str, float]:
    """The metrics ``task``'s setting asks for (plain accuracy for a closed-set task).

    partial: ``accuracy``, ``partial_accuracy``; open_set: ``accuracy``, ``os_star``,
    ``unk``, ``os``, ``hos``; universal: those and ``h_score``.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    out = {"accuracy": float(np.mean(y_true == y_pred)) if y_true.size else float("nan")}
    setting = getattr(task, "setting", None)
    if setting is None:
        return out
    if setting == "partial":
        out["partial_accuracy"] = partial_accuracy(y_true, y_pred, task.shared)
        return out
    out.update(open_set_scores(y_true, y_pred, task.shared, task.unknown_label))
    if setting == "universal":
        out["h_score"] = out["hos"]
    return out


# What each setting logs at an evaluation (prefixed PREFIX); the first is its headline.
SETTING_METRICS = {
    "partial": ("partial_accuracy",),
    "open_set": ("hos", "os_star", "unk", "os"),
    "universal": ("h_score", "os_star", "unk", "os", "hos"),
}
PREFIX = "target_test_"


def logged_keys() -> tuple[str, ...]:
    """Every key :func:`evaluation_metrics` may log, prefixed (for selection and reports)."""
    keys = dict.fromkeys(PREFIX + k for ks in SETTING_METRICS.values() for k in ks)
    return (*keys, PREFIX + "unknown_rate")


def headline(setting: str) -> str:
    """The logged key of a setting's main metric (partial accuracy, HOS, H-score)."""
    return PREFIX + SETTING_METRICS[setting][0]


def evaluation_metrics(task, y_true, y_pred) -> dict[str, float]:
    """The logged label-set metrics of ``task`` (``{}`` for a closed-set task).

    Args:
      task: a :class:`~tljax.data.label_sets.LabelSetTask` (anything with ``setting``,
        ``shared``, ``unknown_label``), or any other task.
      y_true: target test labels.
      y_pred: predicted labels (``unknown_label`` for unknown).
    """
    setting = getattr(task, "setting", None)
    if setting is None:
        return {}
    m = task_metrics(task, y_true, y_pred)
    out = {PREFIX + k: m[k] for k in SETTING_METRICS[setting]}
    if task.unknown_label is not None:
        y_pred = np.asarray(y_pred)
        rate = float(np.mean(y_pred == task.unknown_label)) if y_pred.size else float("nan")
        out[PREFIX + "unknown_rate"] = rate
    return out


def make_predict_step(graphs, method, compute_dtype=None):
    """The jitted ``predict(params, rest, logits, features) -> labels`` of a method with
    its own decision rule (``Method.predict``, its module in evaluation mode); ``None``
    when the method has none (the arg-max is used)."""
    if getattr(method, "predict", None) is None:
        return None
    import jax
    from flax import nnx

    from tljax.methods._steps import cast_floats

    def step(params, rest, logits, features):
        net = nnx.merge(graphs.eval_graph, cast_floats(params, compute_dtype), rest)
        return method.predict(net.method, logits, features)

    return jax.jit(step)


def loop_metrics(task, method, predict_step, state, logits, features) -> dict[str, float]:
    """:func:`evaluation_metrics` of the target test outputs of a training run's state
    (the model's ``logits`` and ``features``; :func:`tljax.loop._evaluate`)."""
    if getattr(task, "setting", None) is None:
        return {}
    if predict_step is None:
        y_pred = np.asarray(logits).argmax(-1)
    else:
        params, rest = state.params, state.rest
        if method.eval_state is not None:
            params, rest = method.eval_state(params, rest, domain="target")
        y_pred = np.asarray(predict_step(params, rest, logits, features))
    return evaluation_metrics(task, task.target.test.y, y_pred)

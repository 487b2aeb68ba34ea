r"""The test-time adaptation loop: a trained model on a stream of unlabelled batches.

For each batch of the stream, in order, one jitted step (a pure function, the state
donated) makes the method's predictions for the batch and adapts on it
(:mod:`tljax.adaptation`: the predictions come from the forward pass *before* the update
for gradient methods, the step's own rule for T3A). Two modes:

* **continual / online** (default): the state carries over from batch to batch;
* **episodic**: every batch starts again from the source state (Tent's "episodic" reset).

Labels, when the stream has them, are used only to score the predictions. Per stream
position the loop writes ``metrics.jsonl`` rows ``{"step": i, "kind": "adapt", "n",
"acc", "online_acc", "entropy", "target_neg_entropy", "target_im", "target_snd", ...}``
(the format of training metrics, :class:`tljax.logs.MetricLogger`; the ``target_*``
scores are the trainer's unsupervised selection scores of :mod:`tljax.evaluate`, computed
on every prediction made so far) and at the end ``results.json`` with the *online
accuracy*: the accuracy of every prediction made along the stream. ``results.json`` has the
trainer's keys too (``task``, ``method``, ``seed``, ``target_test_acc`` = the online
accuracy, ``by_selection_rule``, ``wall_time_s``, ...; :func:`results_record`), so
:mod:`tljax.report` and ``python -m experiments.report`` tabulate adaptation runs and
the selection rules choose among their hyperparameters (:mod:`tljax.hparam_selection`).

Entry points: :func:`adapt_stream` (any method, arrays in memory) and :func:`adapt_run`
(a trained run's workdir, as ``python -m experiments.adapt``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from tljax import adaptation, evaluate
from tljax.adaptation.base import AdaptState, Context, TTAMethod
from tljax.losses.entropy import entropy_per_sample

log = logging.getLogger("tljax")
PREDICT = ("first", "after")
# Examples the soft-neighbourhood-density score sees: the first ones of the stream (the
# default of tljax.evaluate.snd_score, as the trainer uses it).
SND_MAX_EXAMPLES = 2000
SCORE_KEYS = ("target_neg_entropy", "target_im", "target_snd")


def selection_scores(logits: np.ndarray, snd: float | None = None) -> dict[str, float]:
    """The trainer's unsupervised target scores (:data:`tljax.evaluate.SELECTION_RULES`'s
    ``target_neg_entropy``, ``target_im``, ``target_snd``) of the predictions ``logits``.

    Args:
      logits: ``(n, C)`` predictions.
      snd: a precomputed SND score (the score of the first :data:`SND_MAX_EXAMPLES`
        predictions does not change once the stream is longer), or ``None``.
    """
    return {
        "target_neg_entropy": evaluate.neg_entropy_score(logits),
        "target_im": evaluate.information_maximization_score(logits),
        "target_snd": (
            evaluate.snd_score(None, logits, max_examples=SND_MAX_EXAMPLES) if snd is None else snd
        ),
    }


def make_adapt_step(
    method: TTAMethod, *, steps_per_batch: int = 1, predict: str = "first"
) -> Callable:
    """``step(state, x, rng) -> (state, logits, metrics)``: ``steps_per_batch`` updates of
    ``method`` on ``x`` (one for non-iterative methods such as T3A and BN adaptation).

    Args:
      predict: ``"first"``: the predictions are those of the first update (made before
        adapting on ``x`` for gradient methods); ``"after"``: predictions of the state
        after the updates on ``x``.

    Raises:
      ValueError: ``steps_per_batch < 1`` or an unknown ``predict``.
    """
    if steps_per_batch < 1:
        raise ValueError(f"steps_per_batch must be >= 1, got {steps_per_batch}.")
    if predict not in PREDICT:
        raise ValueError(f"Unknown predict={predict!r}; valid: {list(PREDICT)}.")
    steps = steps_per_batch if method.iterative else 1

    def step(state: AdaptState, x, rng):
        logits, metrics = None, {}
        for i in range(steps):  # static and small: unrolled
            state, out, m = method.update(state, x, jax.random.fold_in(rng, i))
            if i == 0:
                logits, metrics = out, dict(m)
        if predict == "after":
            logits = method.predict(state, x)
        metrics["entropy"] = jnp.mean(entropy_per_sample(logits))
        return state, logits, metrics

    return step


@dataclasses.dataclass
class StreamResult:
    """What :func:`adapt_stream` returns.

    Attributes:
      summary: the stream's summary (part of the ``results.json`` record).
      rows: the per-batch metric rows (with the selection scores of every prediction up
        to and including the batch, :func:`selection_scores`).
      logits: ``(n, C)`` predictions in stream order.
      order: the example indices in stream order.
      state: the final state (continual) or the last episode's.
      compilations: number of compilations of the jitted step.
    """

    summary: dict
    rows: list
    logits: np.ndarray
    order: np.ndarray
    state: AdaptState
    compilations: int


def stream_order(n: int, *, shuffle: bool, seed: int) -> np.ndarray:
    """Example indices in stream order (a seeded permutation, or ``0..n-1``)."""
    return np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)


def adapt_stream(
    method: TTAMethod,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int = 64,
    episodic: bool = False,
    steps_per_batch: int = 1,
    predict: str = "first",
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
    logger=None,
) -> StreamResult:
    """Runs ``method`` over ``x`` in batches, predicting each batch and adapting on it.

    Args:
      method: a :class:`~tljax.adaptation.base.TTAMethod`.
      x: the target inputs ``(n, ...)``.
      y: labels, used only to score the predictions (``None``: no accuracy).
      batch_size: examples per stream batch.
      episodic: reset to the source state before every batch.
      steps_per_batch: adaptation steps per batch (gradient methods).
      predict: see :func:`make_adapt_step`.
      shuffle, seed: stream order (a seeded permutation); ``seed`` also seeds the step's
        PRNG keys.
      drop_remainder: drop the last, smaller batch (otherwise it costs one more
        compilation).
      logger: a :class:`tljax.logs.MetricLogger` for the per-batch rows, or ``None``.

    Returns:
      A :class:`StreamResult`.

    Raises:
      ValueError: no batch to adapt on, or labels of another length.
    """
    n = int(x.shape[0])
    if y is not None and len(y) != n:
        raise ValueError(f"{n} inputs but {len(y)} labels.")
    if batch_size < 1 or n < (batch_size if drop_remainder else 1):
        raise ValueError(
            f"No batch to adapt on: {n} examples, batch_size={batch_size}, "
            f"drop_remainder={drop_remainder}."
        )
    order = stream_order(n, shuffle=shuffle, seed=seed)
    stop = n - n % batch_size if drop_remainder else n
    step = jax.jit(
        make_adapt_step(method, steps_per_batch=steps_per_batch, predict=predict),
        donate_argnums=0,
    )
    source = method.init()  # shares the context's arrays: never donated itself
    fresh = lambda: jax.tree.map(jnp.copy, source)  # noqa: E731
    state = None if episodic else fresh()
    key = jax.random.key(seed)
    rows, all_logits = [], []
    correct = seen = 0
    ent_sum = 0.0
    snd = None
    start = time.perf_counter()
    for i, lo in enumerate(range(0, stop, batch_size)):
        idx = order[lo : min(lo + batch_size, stop)]
        if episodic:
            state = fresh()
        state, logits, metrics = step(state, jnp.asarray(x[idx]), jax.random.fold_in(key, i))
        logits = np.asarray(jax.device_get(logits), np.float32)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        row = {"n": len(idx), **metrics}
        seen += len(idx)
        ent_sum += metrics["entropy"] * len(idx)
        if y is not None:
            hits = int(np.sum(logits.argmax(1) == np.asarray(y)[idx]))
            correct += hits
            row["acc"] = hits / len(idx)
            row["online_acc"] = correct / seen
        all_logits.append(logits)
        # Every prediction so far (the last row's scores are the whole stream's).
        row.update(selection_scores(np.concatenate(all_logits), snd))
        snd = row["target_snd"] if seen >= SND_MAX_EXAMPLES else None
        rows.append(row)
        if logger is not None:
            logger.write(i, "adapt", row)
    summary = dict(
        method=method.name,
        hparams=method.hparams,
        episodic=episodic,
        steps_per_batch=steps_per_batch if method.iterative else 1,
        predict=predict,
        batch_size=batch_size,
        num_batches=len(rows),
        num_examples=seen,
        mean_entropy=ent_sum / seen,
        seconds=time.perf_counter() - start,
        **{k: rows[-1][k] for k in SCORE_KEYS},
    )
    if y is not None:
        summary["online_acc"] = correct / seen
    # jax.jit's cache: one entry per compiled input signature (-1 where JAX lacks it).
    compilations = getattr(step, "_cache_size", lambda: -1)()
    return StreamResult(
        summary, rows, np.concatenate(all_logits), order[:stop], state, compilations
    )


# ----------------------------------------------------------------------------------------
# A trained run as the starting point.


def target_inputs(config, task_name: str, split: str = "test"):
    """``(x, y, to_float, num_classes)``: the ``split`` of ``task_name``'s target domain
    (``y`` is ``None`` for an unlabelled target),
    prepared as the run's own inputs were (float inputs standardised on the host with the
    statistics of the run's source train split; uint8 pixels kept and converted in the
    step by ``to_float``).

    Raises:
      ValueError: an unknown split.
    """
    from tljax.data import pixels, tasks
    from tljax.data.arrays import is_unlabeled
    from tljax.data.core import standardize

    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}; valid: ['test', 'train'].")
    own_kwargs = config.data.task_kwargs.to_dict()
    same = task_name == config.data.task
    common = dict(data_seed=config.data.data_seed, image_size=config.data.image_size)
    task = tasks.get_task(task_name, **common, **(own_kwargs if same else {}))
    data = getattr(task.target, split)
    # An unlabelled target (tljax.data.from_arrays) has placeholder labels: none to score.
    x, y = data.x, (None if is_unlabeled(data) else np.asarray(data.y))
    to_float = lambda a: a  # noqa: E731
    if config.data.standardize or pixels.is_uint8(x):
        own = task if same else tasks.get_task(config.data.task, **common, **own_kwargs)
        if pixels.is_uint8(x):
            mean = std = None
            if config.data.standardize:
                mean, std = pixels.channel_stats(own.source.train.x)
            to_float = partial(pixels.to_float, mean=mean, std=std)
        else:
            _, mean, std = standardize(own)
            x = ((np.asarray(x) - mean) / std).astype(np.float32)
    return x, y, to_float, task.num_classes


def load_context(workdir: str, task_name: str | None = None, split: str = "test"):
    """The trained run in ``workdir`` as a :class:`~tljax.adaptation.base.Context`, and
    the target data to adapt on.

    Returns:
      ``(ctx, x, y, config)``.

    Raises:
      FileNotFoundError: no ``config.json`` in ``workdir``.
      tljax.checkpoint.CheckpointError: no readable checkpoint.
      ValueError: the target inputs do not fit the model, or a class-count mismatch.
    """
    from tljax.loop import build
    from tljax.plots import config_from_json
    from tljax.workdir import init_from

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {path}: {workdir} is not a trained run's directory.")
    config = config_from_json(path)
    config.model.init_from = ""  # the run's own weights replace everything below
    parts = build(config)
    state = parts["state"]
    params, rest = init_from(state.params, state.rest, workdir, ".*")
    task_name = task_name or config.data.task
    x, y, to_float, num_classes = target_inputs(config, task_name, split)
    want = tuple(parts["task"].source.train.x.shape[1:])
    if tuple(x.shape[1:]) != want:
        raise ValueError(
            f"{workdir}: the model takes inputs of shape {want} but task {task_name!r} has "
            f"{tuple(x.shape[1:])}."
        )
    own_classes = parts["task"].num_classes
    if num_classes != own_classes:
        raise ValueError(
            f"Task {task_name!r} has {num_classes} classes but the run's head has "
            f"{own_classes}; test-time adaptation keeps the label set."
        )
    ctx = Context(parts["graphs"], params, rest, own_classes, to_float)
    return ctx, x, y, config


def adapt_run(
    workdir: str,
    method_name: str,
    *,
    task: str | None = None,
    out: str | None = None,
    split: str = "test",
    hparams: dict | None = None,
    **stream_kwargs,
) -> dict:
    """Adapts the run in ``workdir`` to ``task``'s target ``split`` with a method of
    :mod:`tljax.adaptation`, writing ``metrics.jsonl`` (kind ``"adapt"``), ``adapt.json``
    (the arguments) and ``results.json`` to ``out``.

    Args:
      workdir: a trained run (``config.json`` and ``checkpoints/``).
      method_name: a name of :func:`tljax.adaptation.names`.
      task: the task whose target domain is the stream (default: the run's task).
      out: output directory (default ``<workdir>/adapt/<task>_<method>_<mode>``, the task
        name with ``/`` and ``->`` replaced by ``_``).
      split: target split streamed (``"test"``).
      hparams: the method's hyperparameters.
      **stream_kwargs: :func:`adapt_stream`'s options.

    Returns:
      The ``results.json`` record: the stream's summary, ``source_acc`` (the unadapted
      model's accuracy on the same examples) and the trainer's keys
      (:func:`results_record`). The predictions go to ``predictions.npz`` (``logits`` and
      ``labels`` in stream order, ``order``: the indices into the split).
    """
    from tljax.logs import MetricLogger
    from tljax.workdir import atomic_write

    ctx, x, y, config = load_context(workdir, task, split)
    method = adaptation.get(method_name, ctx, **(hparams or {}))
    mode = "episodic" if stream_kwargs.get("episodic") else "online"
    task_tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", task or config.data.task)
    out = out or os.path.join(workdir, "adapt", f"{task_tag}_{method_name}_{mode}")
    os.makedirs(out, exist_ok=True)
    args = dict(
        workdir=os.path.abspath(workdir),
        method=method_name,
        task=task or config.data.task,
        split=split,
        hparams=hparams or {},
        **stream_kwargs,
    )
    atomic_write(os.path.join(out, "adapt.json"), json.dumps(args, indent=2) + "\n")
    if os.path.exists(os.path.join(out, "metrics.jsonl")):
        os.remove(os.path.join(out, "metrics.jsonl"))  # a rerun replaces the old rows
    logger = MetricLogger(out, tensorboard=False)
    try:
        res = adapt_stream(method, x, y, logger=logger, **stream_kwargs)
    finally:
        logger.close()
    summary = dict(res.summary, task=args["task"], split=split, workdir=args["workdir"])
    src = adaptation.get("source", ctx)
    src_logits = np.concatenate(
        [
            np.asarray(jax.jit(src.predict)(src.init(), jnp.asarray(x[i : i + 256])))
            for i in range(0, len(x), 256)
        ]
    )
    if y is not None:
        summary["source_acc"] = evaluate.accuracy(src_logits[res.order], y[res.order])
    else:
        p = np.exp(src_logits - src_logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        summary["source_mean_entropy"] = float(-np.sum(p * np.log(p + 1e-30), 1).mean())
    summary.update(
        results_record(
            summary,
            res,
            None if y is None else y[res.order],
            num_classes=ctx.num_classes,
            seed=int(stream_kwargs.get("seed", 0)),
            adapt_config=adapt_config(workdir, args, method.hparams),
        )
    )
    labels = {} if y is None else {"labels": np.asarray(y)[res.order]}
    np.savez(os.path.join(out, "predictions.npz"), logits=res.logits, order=res.order, **labels)
    atomic_write(os.path.join(out, "results.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def adapt_config(workdir: str, args: dict, hparams: dict) -> dict:
    """The flattened settings of an adaptation run: the trained run's ``config.json``
    (its keys unchanged) and the adaptation's own under ``adapt.`` (``adapt.method``,
    ``adapt.hparams.<name>`` with the method's defaults filled in, ``adapt.episodic``,
    ``adapt.steps_per_batch``, ...; not its seed, the replicate axis).
    :func:`tljax.report.attach_configs` reads it as a run's config, so a variant names
    the setting that differs between adaptation runs (e.g. ``adapt.hparams.lr=0.01``)."""
    with open(os.path.join(workdir, "config.json")) as f:
        flat = json.load(f)
    skip = {"workdir", "hparams", "seed", "out"}
    own = {f"adapt.{k}": v for k, v in args.items() if k not in skip}
    own.update({f"adapt.hparams.{k}": v for k, v in hparams.items()})
    defaults = dict(episodic=False, steps_per_batch=1, predict="first", batch_size=64)
    defaults.update(shuffle=True, drop_remainder=False)
    for k, v in defaults.items():  # adapt_stream's defaults, when not passed
        own.setdefault(f"adapt.{k}", v)
    return json.loads(json.dumps({**flat, **own}, default=str))


def results_record(
    summary: dict,
    res: StreamResult,
    labels: np.ndarray | None,
    *,
    num_classes: int,
    seed: int,
    adapt_config: dict | None = None,
) -> dict:
    """The keys of the trainer's ``results.json`` (:func:`tljax.loop.train_and_evaluate`)
    for an adaptation run, so :func:`tljax.report.collect` and its tables take it.

    The run has one evaluation: the whole stream. ``target_test_acc`` is the online
    accuracy (NaN without labels, as the trainer's for a target without a test split);
    ``target_neg_entropy``/``target_im``/``target_snd`` are the selection scores of all its
    predictions; ``by_selection_rule`` is :func:`tljax.report.select_by_rules` of that one
    evaluation (every rule picks it; the ``score`` is what selects *between* runs,
    :mod:`tljax.hparam_selection`). ``steps`` counts stream positions (batches).

    Args:
      summary: :class:`StreamResult`'s summary (with ``task`` and ``split``).
      res: the stream's result.
      labels: the labels in stream order, or ``None``.
      num_classes: classes of the head.
      seed: the stream's seed (the replicate axis of the tables).
      adapt_config: the run's flattened settings (:func:`adapt_config`).
    """
    from tljax.report import select_by_rules

    acc = summary.get("online_acc", float("nan"))
    final = {"step": len(res.rows) - 1, "target_test_acc": acc}
    final.update({k: summary[k] for k in SCORE_KEYS})
    record = {
        "seed": seed,
        "steps": len(res.rows),
        "target_test_acc": acc,
        "target_test_mean_class_acc": (
            float("nan")
            if labels is None
            else evaluate.mean_class_accuracy(res.logits, labels, num_classes)
        ),
        "evaluated_on": {
            "target": f"{summary['task']} target/{summary['split']}: online predictions, "
            f"{summary['num_examples']} examples"
        },
        "selection": "whole stream (online predictions)",
        "by_selection_rule": select_by_rules([final]),
        "wall_time_s": summary["seconds"],
        "devices": 1,
        "processes": 1,
        "source_workdir": summary.get("workdir"),
    }
    if adapt_config is not None:
        record["adapt_config"] = adapt_config
    return record


__all__ = [
    "StreamResult",
    "adapt_config",
    "adapt_run",
    "adapt_stream",
    "load_context",
    "make_adapt_step",
    "results_record",
    "selection_scores",
    "stream_order",
    "target_inputs",
]

r"""Ranks trained checkpoints for a target task with transferability estimators.

    python -m experiments.rank --workdirs=runs/a,runs/b,runs/c --task=NAME \
        [--task_option=max_train=2000] [--accuracies=0.81,0.77,0.92] \
        [--accuracy_key=target_test_acc] [--max_examples=5000] [--out=rank.json]

For each run directory (``config.json`` + ``checkpoints/``, as written by
``experiments/run.py``) the model is rebuilt from its config (:func:`tljax.loop.build`),
its last verified checkpoint loaded (:func:`tljax.checkpoint.load_trained`), and the
features (the head's input) and logits computed on the *training* split of the target
domain of ``--task`` (built with the ``--task_option`` options, else with the run's own
``data.task_kwargs`` when ``--task`` is the run's own task). Scores
(:mod:`tljax.ranking`): LogME and H-score from the features, LEEP from the softmax of the
run's own head (its source label set, whatever the target's is), NCE from its arg-max.
Each estimator's scores are compared with the runs' fine-tuned target accuracies by
Kendall's tau and weighted tau (the LogME paper's protocol).

Accuracies: ``--accuracies`` (one per workdir, same order), else ``--accuracy_key`` of
each workdir's ``results.json``. In the LogME protocol these are the accuracies of the
checkpoints *after fine-tuning on the target task*; pass them explicitly when the runs in
``--workdirs`` are the pre-trained checkpoints rather than the fine-tuned ones.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

FLAGS = flags.FLAGS
ESTIMATORS = ("logme", "leep", "nce", "h_score")
log = logging.getLogger("tljax")


def define_flags() -> None:
    """The command-line flags (defined only when run as a script)."""
    flags.DEFINE_list("workdirs", None, "Run directories to rank (comma-separated).")
    flags.DEFINE_string("task", None, "Target task; its target domain's train split is used.")
    flags.DEFINE_multi_string(
        "task_option", [], "key=value option of --task (a Python literal or a string)."
    )
    flags.DEFINE_list("accuracies", None, "Fine-tuned accuracies, one per workdir.")
    flags.DEFINE_string("accuracy_key", "target_test_acc", "results.json key of the accuracy.")
    flags.DEFINE_integer("max_examples", None, "Seeded subsample of the target train split.")
    flags.DEFINE_integer("batch_size", 256, "Examples per forward pass.")
    flags.DEFINE_string("out", None, "Also write the result as JSON here.")
    flags.mark_flags_as_required(["workdirs", "task"])


def parse_task_options(items: list[str]) -> dict:
    """``["max_train=2000", "degrees=30.0"]`` → ``{"max_train": 2000, "degrees": 30.0}``
    (values as Python literals, else strings).

    Raises:
      ValueError: an item without ``=``.
    """
    import ast

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--task_option takes key=value, got {item!r}.")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _target_inputs(config, task_name: str, task_kwargs: dict | None = None):
    """The target train split of ``task_name``, prepared as the run's own inputs were.

    ``task_kwargs``: the task's options; ``None``: the run's own ``data.task_kwargs`` if
    ``task_name`` is the run's task, else none."""
    from tljax.data import pixels, tasks
    from tljax.data.core import standardize

    same = task_name == config.data.task
    if task_kwargs is not None:
        kwargs = dict(task_kwargs)
    else:
        kwargs = config.data.task_kwargs.to_dict() if same else {}
    task = tasks.get_task(
        task_name, data_seed=config.data.data_seed, image_size=config.data.image_size, **kwargs
    )
    x, y = task.target.train.x, np.asarray(task.target.train.y)
    # uint8 images are standardised inside the run's eval step; float inputs with the
    # statistics of the run's own source train split (as tljax.loop.build does).
    if config.data.standardize and not pixels.is_uint8(x):
        own = (
            task
            if same
            else tasks.get_task(
                config.data.task,
                data_seed=config.data.data_seed,
                image_size=config.data.image_size,
                **config.data.task_kwargs.to_dict(),
            )
        )
        _, mean, std = standardize(own)
        x = ((x - mean) / std).astype(np.float32)
    return x, y, task.num_classes


def extract(
    workdir: str,
    task_name: str,
    *,
    task_kwargs: dict | None = None,
    max_examples: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """Features and logits of a trained run on ``task_name``'s target train split.

    Returns:
      ``{"features" (n, d), "logits" (n, C_s), "labels" (n,), "num_classes" C_t,
      "num_source_classes" C_s}``.

    Raises:
      FileNotFoundError: no ``config.json`` in ``workdir``.
      tljax.checkpoint.CheckpointError: no readable checkpoint.
      ValueError: the target inputs do not fit the run's model.
    """
    from tljax.loop import build
    from tljax.plots import config_from_json
    from tljax.workdir import init_from

    config = config_from_json(os.path.join(workdir, "config.json"))
    config.model.init_from = ""  # the run's own weights replace everything below
    parts = build(config)
    state = parts["state"]
    params, rest = init_from(state.params, state.rest, workdir, ".*")
    return extract_model(
        config,
        parts,
        params,
        rest,
        task_name,
        task_kwargs=task_kwargs,
        max_examples=max_examples,
        seed=seed,
        batch_size=batch_size,
        name=workdir,
    )


def extract_model(
    config,
    parts: dict,
    params,
    rest,
    task_name: str,
    *,
    task_kwargs: dict | None = None,
    max_examples: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    name: str = "the model",
) -> dict:
    """:func:`extract` for a model in memory: ``parts`` from :func:`tljax.loop.build` of
    ``config``, with parameters ``params``/``rest`` (e.g. the untrained initialisation,
    for a from-scratch candidate)."""
    import jax

    from tljax import evaluate

    x, y, num_classes = _target_inputs(config, task_name, task_kwargs)
    want = tuple(parts["task"].source.train.x.shape[1:])
    if tuple(x.shape[1:]) != want:
        raise ValueError(
            f"{name}: the model takes inputs of shape {want} but task {task_name!r} has "
            f"{tuple(x.shape[1:])}; rank runs whose inputs match the target task."
        )
    if max_examples is not None and max_examples < len(x):
        idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_examples])
        x, y = x[idx], y[idx]
    logits, feats = evaluate.predict(
        jax.jit(parts["eval_step"]), params, rest, x, batch_size=batch_size
    )
    return dict(
        features=feats,
        logits=logits,
        labels=y,
        num_classes=num_classes,
        num_source_classes=int(logits.shape[1]),
    )


def scores(ex: dict) -> dict[str, float]:
    """Every estimator of :mod:`tljax.ranking` on one run's :func:`extract` output."""
    from tljax import ranking

    logits = np.asarray(ex["logits"], np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    y, c = ex["labels"], ex["num_classes"]
    return dict(
        logme=ranking.logme(ex["features"], y, c),
        leep=ranking.leep(probs, y, c),
        nce=ranking.nce(logits.argmax(1), y, ex["num_source_classes"], c),
        h_score=ranking.h_score(ex["features"], y),
    )


def _accuracy(workdir: str, key: str) -> float:
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {path}: the run has not finished; pass --accuracies instead.")
    with open(path) as f:
        res = json.load(f)
    if key not in res:
        raise KeyError(
            f"{path} has no {key!r}; keys with 'acc': {sorted(k for k in res if 'acc' in k)}."
        )
    return float(res[key])


def rank(
    workdirs: list[str],
    task: str,
    *,
    task_kwargs: dict | None = None,
    accuracies: list[float] | None = None,
    accuracy_key: str = "target_test_acc",
    max_examples: int | None = None,
    batch_size: int = 256,
    out: str | None = None,
) -> dict:
    """Scores every run and correlates each estimator with the fine-tuned accuracies.

    Returns:
      ``{"task", "workdirs", "accuracies", "n_examples", "estimators": {name: {"scores",
      "kendall_tau", "weighted_tau"}}}``; also written to ``out`` as JSON if given.

    Raises:
      ValueError: fewer than 2 runs, or not one accuracy per run.
    """
    from tljax import ranking

    if len(workdirs) < 2:
        raise ValueError(f"Ranking needs at least 2 workdirs; got {len(workdirs)}.")
    if accuracies is not None and len(accuracies) != len(workdirs):
        raise ValueError(
            f"{len(workdirs)} workdirs but {len(accuracies)} accuracies; give one per run."
        )
    accs = (
        [float(a) for a in accuracies]
        if accuracies is not None
        else [_accuracy(w, accuracy_key) for w in workdirs]
    )
    per_run, n = [], None
    for w in workdirs:
        ex = extract(
            w, task, task_kwargs=task_kwargs, max_examples=max_examples, batch_size=batch_size
        )
        n = len(ex["labels"])
        per_run.append(scores(ex))
    result = dict(task=task, workdirs=list(workdirs), accuracies=accs, n_examples=n)
    result["estimators"] = {}
    for name in ESTIMATORS:
        s = [r[name] for r in per_run]
        result["estimators"][name] = dict(
            scores=s,
            kendall_tau=ranking.kendall_tau(s, accs),
            weighted_tau=ranking.weighted_kendall_tau(s, accs),
        )
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    return result


def format_table(result: dict) -> str:
    """Markdown: each run's scores and accuracy, then each estimator's tau and weighted tau."""
    names = list(result["estimators"])
    lines = [
        f"Target task {result['task']} ({result['n_examples']} target train examples)",
        "",
        "| run | accuracy | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for i, w in enumerate(result["workdirs"]):
        cells = [f"{result['estimators'][k]['scores'][i]:.4f}" for k in names]
        lines.append(f"| {w} | {result['accuracies'][i]:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "| estimator | Kendall tau | weighted tau |", "|---|---|---|"]
    for k in names:
        e = result["estimators"][k]
        lines.append(f"| {k} | {e['kendall_tau']:.3f} | {e['weighted_tau']:.3f} |")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore at INFO
    result = rank(
        FLAGS.workdirs,
        FLAGS.task,
        task_kwargs=parse_task_options(FLAGS.task_option) if FLAGS.task_option else None,
        accuracies=[float(a) for a in FLAGS.accuracies] if FLAGS.accuracies else None,
        accuracy_key=FLAGS.accuracy_key,
        max_examples=FLAGS.max_examples,
        batch_size=FLAGS.batch_size,
        out=FLAGS.out,
    )
    print(format_table(result))
    sys.stdout.flush()


if __name__ == "__main__":
    define_flags()
    app.run(main)

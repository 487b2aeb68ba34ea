"""Figures of a sweep (matplotlib, Agg backend, PNG) and features of trained runs.

File names are predictable so a README can link them (``<slug>`` replaces ``->`` by
``_to_`` and other characters outside ``[A-Za-z0-9._=-]`` by ``-``):

* ``curves_<task>__<method>[__<variant>].png``: task loss, method loss (train, per log
  window) and target test accuracy (per evaluation) against the step, mean ± std over the
  group's seeds.
* ``pad_<task>.png``: proxy A-distance between source and target test features: of the
  input pixels, of a source-only run ("before adaptation") and of each adapted run.
* ``tsne_<task>.png``: t-SNE of source vs target test features, source only beside each
  adapted method (at most ``max_points`` points per panel, half per domain).

Features come from a run's last checkpoint: the config is rebuilt from its
``config.json`` (:func:`config_from_json`), the model with :func:`tljax.loop.build`.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    """A file-name-safe form of a task, method or variant name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text.replace("->", "_to_")).strip("-")


def curves_name(task: str, method: str, variant: str = "") -> str:
    """File name of a run group's learning curves."""
    return "__".join(slug(p) for p in ("curves_" + task, method, variant) if p) + ".png"


def learning_curves(runs: list[dict], path: str, title: str = "") -> str:
    """Plots task loss, method loss and target test accuracy against the step.

    Args:
      runs: the runs of one group (rows of :func:`tljax.report.collect`, with ``workdir``
        holding ``metrics.jsonl``); curves are mean ± std over them.
      path: the PNG to write.
      title: figure title.

    Returns:
      ``path``.
    """
    from tljax.logs import read_metrics

    panels = [("train", "task_loss", "task loss"), ("train", "method_loss", "method loss")]
    panels.append(("eval", "target_test_acc", "target test accuracy (%)"))
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    logs = [read_metrics(r["workdir"]) for r in runs if os.path.exists(_metrics(r))]
    if not any(r["kind"] in ("train", "eval") for rows in logs for r in rows):
        # Test-time adaptation runs (tljax.adapt): one row per stream position.
        panels = [
            ("adapt", "online_acc", "online accuracy so far (%)"),
            ("adapt", "entropy", "batch prediction entropy"),
            ("adapt", "target_im", "IM score of the predictions so far"),
        ]
    for ax, (kind, key, label) in zip(axes, panels):
        series = [
            {r["step"]: float(r[key]) for r in rows if r["kind"] == kind and key in r}
            for rows in logs
        ]
        steps = sorted({s for d in series for s in d})
        if steps:
            vals = np.array([[d.get(s, np.nan) for s in steps] for d in series])
            if key.endswith("_acc"):
                vals = 100.0 * vals
            mean, std = np.nanmean(vals, 0), np.nanstd(vals, 0)
            ax.plot(steps, mean, marker="o" if kind == "eval" else None, ms=3)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
        ax.set_xlabel("stream position" if kind == "adapt" else "step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} ({len(logs)} seed{'s' * (len(logs) != 1)}, mean ± std)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _metrics(run: dict) -> str:
    return os.path.join(run["workdir"], "metrics.jsonl")


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def config_from_json(path: str):
    """Rebuilds a run's config from its flattened ``config.json``.

    Starts from :func:`tljax.config.base_config` and sets every key (JSON lists become
    tuples, as the configs write them).

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: for a key that :func:`~tljax.config.base_config` does not have.
    """
    import ml_collections

    from tljax import config as config_lib

    if not os.path.exists(path):
        raise FileNotFoundError(f"No run config at {path!r} (written by train_and_evaluate).")
    with open(path) as f:
        flat = json.load(f)
    c = config_lib.base_config()
    valid = config_lib.flatten(c)
    for key, value in flat.items():
        if key not in valid:
            raise ValueError(
                f"{path}: unknown config key {key!r}; the run was made with another "
                f"config schema. Valid keys: {sorted(valid)}."
            )
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        value = _tuples(value)
        node[leaf] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    return c


def restore_run(workdir: str):
    """The build parts of a run (:func:`tljax.loop.build`) and its last checkpointed state.

    Raises:
      FileNotFoundError: no ``config.json`` in ``workdir``.
      tljax.checkpoint.CheckpointError: no readable checkpoint.
    """
    from tljax.checkpoint import Checkpointer
    from tljax.loop import _state_to_tree, build
    from tljax.train import TrainState

    parts = build(config_from_json(os.path.join(workdir, "config.json")))
    with Checkpointer(workdir) as ckpt:
        tree, _ = ckpt.restore(_state_to_tree(parts["state"]))
    return parts, TrainState(**tree)


def run_features(workdir: str, max_points: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Features of a trained run on the source and target *test* splits.

    Args:
      workdir: the run directory (``config.json`` and ``checkpoints/``).
      max_points: at most this many examples in all, half per domain (seeded subsample).
      seed: seed of the subsample.

    Returns:
      ``{"source", "target"}`` features and ``{"source_x", "target_x"}`` the inputs used.
    """
    import jax

    from tljax import evaluate

    parts, state = restore_run(workdir)
    eval_fn = jax.jit(parts["eval_step"])
    out = {}
    rng = np.random.default_rng(seed)
    for role in ("source", "target"):
        x = getattr(parts["task"], role).test.x
        idx = np.sort(rng.permutation(len(x))[: max_points // 2])
        _, feats = evaluate.predict(eval_fn, state.params, state.rest, x[idx], batch_size=256)
        out[role], out[f"{role}_x"] = feats, np.asarray(x[idx]).reshape(len(idx), -1)
    return out


def pad_plot(pads: dict[str, float], path: str, title: str = "") -> str:
    """Bar chart of proxy A-distances (``{label: value}``, in the given order)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.3 * len(pads) + 2, 3.4))
    labels = list(pads)
    bars = ax.bar(range(len(pads)), [pads[k] for k in labels], color="tab:blue")
    for b, k in zip(bars, labels):
        ax.annotate(f"{pads[k]:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center")
    ax.set_xticks(range(len(pads)), labels, rotation=20, ha="right")
    ax.set_ylim(0, 2.1)
    ax.set_ylabel("proxy A-distance")
    ax.set_title(title or "proxy A-distance (0: indistinguishable, 2: separable)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tsne_plot(
    features: dict[str, dict], path: str, title: str = "", seed: int = 0, threads: int = 1
) -> str:
    """One t-SNE panel per label: source (blue) vs target (red) features.

    Args:
      features: ``{label: {"source": (n, d), "target": (m, d)}}``.
      path: the PNG to write.
      title: figure title.
      seed: t-SNE seed.
      threads: OpenMP threads of t-SNE. 1 by default: on a busy machine sklearn's
        Barnes-Hut threads spin at barriers (1,000 points: 10 s with 1 thread, 40 s with
        2 on 2 shared cores).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    plt = _pyplot()
    cols = min(len(features), 5)
    rows = -(-len(features) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(features) :]:
        ax.axis("off")
    for ax, (label, f) in zip(axes.flat, features.items()):
        x = np.concatenate([f["source"], f["target"]]).astype(np.float64)
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
        with threadpool_limits(threads, user_api="openmp"):
            tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
            emb = tsne.fit_transform(x)
        n = len(f["source"])
        ax.scatter(*emb[:n].T, s=4, c="tab:blue", label="source", alpha=0.6)
        ax.scatter(*emb[n:].T, s=4, c="tab:red", label="target", alpha=0.6)
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", markerscale=3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def feature_figures(
    groups: dict[tuple[str, str, str], list[dict]],
    out_dir: str,
    *,
    max_points: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Proxy A-distance and t-SNE figures per task from each group's lowest-seed run.

    Args:
      groups: runs by ``(task, method, variant)`` (:func:`tljax.report.group_runs`).
      out_dir: where ``pad_<task>.png`` and ``tsne_<task>.png`` go.
      max_points: points per t-SNE panel and per A-distance estimate.
      seed: seed of subsampling, t-SNE and the A-distance split.

    Returns:
      ``{task: {label: proxy A-distance}}``; labels are ``"pixels"``, ``"<method>"`` or
      ``"<method> [<variant>]"``. Runs without a checkpoint are skipped.
    """
    from tljax.checkpoint import CheckpointError
    from tljax.evaluate import proxy_a_distance

    by_task: dict[str, dict[str, dict]] = {}
    for (task, method, variant), runs in groups.items():
        run = min(runs, key=lambda r: r["seed"])
        if not os.path.isdir(os.path.join(run["workdir"], "checkpoints")):
            continue
        try:
            feats = run_features(run["workdir"], max_points, seed)
        except (CheckpointError, FileNotFoundError, ValueError):
            continue
        label = f"{method} [{variant}]" if variant else method
        by_task.setdefault(task, {})[label] = feats
    pads = {}
    for task, feats in by_task.items():
        first = next(iter(feats.values()))
        pads[task] = {"pixels": proxy_a_distance(first["source_x"], first["target_x"], seed=seed)}
        for label, f in feats.items():
            pads[task][label] = proxy_a_distance(f["source"], f["target"], seed=seed)
        pad_plot(
            pads[task],
            os.path.join(out_dir, f"pad_{slug(task)}.png"),
            f"{task}: proxy A-distance of test features (source only = before adaptation)",
        )
        tsne_plot(
            feats,
            os.path.join(out_dir, f"tsne_{slug(task)}.png"),
            f"{task}: t-SNE of test features (blue: source, red: target)",
            seed,
        )
    return pads

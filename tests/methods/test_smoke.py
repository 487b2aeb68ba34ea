"""Every method: registry, a jitted step with finite metrics, and a method loss whose
gradient reaches the feature extractor."""

import functools

import jax
import numpy as np
import pytest

from tests.methods.helpers import (
    ALL_METHODS,
    SMOKE_HPARAMS,
    copy_tree,
    random_batch,
    setup,
    subtree,
)
from tljax import methods

DEFAULT_STEP = [m for m in ALL_METHODS if m not in ("mcd", "self_training", "mean_teacher", "adda")]


@functools.cache
def ran(name: str):
    """Three jitted steps of ``name`` on vector inputs.

    Returns:
      ``(params before, params after step 1, state after step 3, metrics of each step)``.
    """
    s = setup(name, hparams=SMOKE_HPARAMS.get(name), shape=(12,))
    before = copy_tree(s.state.params)
    step = jax.jit(s.step, donate_argnums=0)
    state, history, first = s.state, [], None
    for i in range(3):
        state, metrics = step(state, random_batch(seed=i, shape=(12,)))
        history.append(jax.device_get(metrics))
        first = copy_tree(state.params) if first is None else first
    return before, first, state, history


def test_registry_lists_every_method():
    assert set(ALL_METHODS) <= set(methods.names())


@pytest.mark.parametrize("name", ALL_METHODS)
def test_step_jits_and_runs_with_finite_metrics(name):
    _, _, state, history = ran(name)
    assert int(state.step) == 3
    assert int(state.nonfinite_step) == -1
    assert {"loss", "task_loss", "method_loss", "source_acc"} <= set(history[-1])
    for metrics in history:
        for key, value in metrics.items():
            assert np.isfinite(value), (name, key, value)


@pytest.mark.parametrize("name", [m for m in ALL_METHODS if m != "source_only"])
def test_training_moves_the_feature_extractor(name):
    before, _, state, _ = ran(name)
    prefix = "method/encoder/backbone/" if name == "adda" else "model/backbone/"
    after = subtree(state.params, prefix)
    assert any(
        not np.array_equal(before_leaf, after[k])
        for k, before_leaf in subtree(before, prefix).items()
    ), name


@pytest.mark.parametrize("name", [m for m in DEFAULT_STEP if m != "source_only"])
def test_method_loss_gradient_reaches_the_backbone(name):
    # Same seed, data and model forward as source-only: after one step (zero momentum) the
    # backbones differ only by the method loss's gradient, which must not vanish.
    _, first, _, _ = ran(name)
    _, reference, _, _ = ran("source_only")
    ours, theirs = subtree(first, "model/backbone/"), subtree(reference, "model/backbone/")
    diff = max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)
    assert diff > 1e-7, (name, diff)


@pytest.mark.parametrize("name", ["self_training", "mean_teacher"])
def test_consistency_gradient_reaches_the_backbone(name):
    # The same first step with weight 0: the backbones must differ (the strong/teacher views
    # change the batch, so source-only is not the right reference here).
    _, first, _, _ = ran(name)
    s = setup(name, hparams=SMOKE_HPARAMS.get(name), weight=0.0, shape=(12,))
    state, _ = jax.jit(s.step)(s.state, random_batch(seed=0, shape=(12,)))
    ours, theirs = subtree(first, "model/backbone/"), subtree(state.params, "model/backbone/")
    assert max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours) > 1e-7


@pytest.mark.parametrize("name", ["mcd", "adda"])
def test_lr_schedule_counters_advance_once_per_iteration(name):
    # MCD makes 2 + num_k updates per iteration, ADDA one partial update per iteration.
    _, _, state, _ = ran(name)
    counts = [
        int(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
        if "count" in jax.tree_util.keystr(path)
    ]
    assert counts and set(counts) == {3}


def test_source_only_method_loss_is_zero():
    _, _, _, history = ran("source_only")
    assert all(h["method_loss"] == 0.0 for h in history)


@pytest.mark.parametrize(
    "name, hparams, match",
    [
        ("cdan", dict(randomized_dim=0), "randomized_dim"),
        ("dan", dict(num_kernels=0), "num_kernels"),
        ("jan", dict(softmax_sigma=-1.0), "softmax_sigma"),
        ("coral", dict(on="pixels"), "features"),
        ("mcc", dict(temperature=0.0), "temperature"),
        ("afn", dict(delta_r=-1.0), "delta_r"),
        ("bsp", dict(k=0), "k must"),
        ("mdd", dict(dropout=1.0), "dropout"),
        ("mcd", dict(num_k=0), "num_k"),
        ("self_training", dict(threshold=1.5), r"\[0, 1\]"),
        ("mean_teacher", dict(decay=2.0), "decay"),
        ("adda", dict(pretrain_steps=-1), "pretrain_steps"),
        ("dan", dict(bandwidth=1.0), "Bad hyperparameters"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        methods.get(name, **hparams)

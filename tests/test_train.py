"""The pure train step: freezing inside the step, determinism, precision, donation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import random_batch, tiny_setup
from tljax import optim


def _run(state, step, n=3, seed=0):
    f = jax.jit(step, donate_argnums=0)
    metrics = None
    for i in range(n):
        state, metrics = f(state, random_batch(seed=seed + i))
    return state, metrics


def test_step_is_deterministic_and_counts_steps():
    s1, m1 = _run(*tiny_setup("dann")[:2])
    s2, m2 = _run(*tiny_setup("dann")[:2])
    assert int(s1.step) == 3
    jax.tree.map(np.testing.assert_array_equal, s1.params, s2.params)
    assert float(m1["loss"]) == float(m2["loss"])
    assert {"loss", "task_loss", "method_loss", "source_acc", "dann/domain_acc"} <= set(m1)


def test_frozen_backbone_bitwise_unchanged_inside_train_step():
    state, step, _, labels = tiny_setup("dann", rules=[("model/backbone/", None), (".*", 1.0)])
    before = jax.tree.map(np.asarray, state.params)
    after, _ = _run(state, step)
    flat_b = jax.tree_util.tree_flatten_with_path(before)[0]
    flat_a = jax.tree.leaves(after.params)
    changed = {optim.path_str(p): not np.array_equal(b, a) for (p, b), a in zip(flat_b, flat_a)}
    assert not any(v for k, v in changed.items() if k.startswith("model/backbone/"))
    assert changed["model/head/kernel"] and changed["method/out/kernel"]


def test_frozen_params_get_no_gradient_computation():
    # With everything in the model frozen, the jaxpr of the step must not contain the
    # backward convolution of the backbone (stop_gradient prunes it).
    state, step, _, _ = tiny_setup("source_only", rules=[("model/backbone/", None), (".*", 1.0)])
    jaxpr = str(jax.make_jaxpr(step)(state, random_batch()))
    n_conv = jaxpr.count("conv_general_dilated")
    state2, step2, _, _ = tiny_setup("source_only")
    n_conv_trained = str(jax.make_jaxpr(step2)(state2, random_batch())).count(
        "conv_general_dilated"
    )
    assert n_conv == 2 and n_conv_trained > 2, (n_conv, n_conv_trained)


# Two different programs agree to float rounding only with full float32 matmuls (GPUs
# default to TF32, ~1e-3).
@pytest.mark.usefixtures("highest_precision")
def test_step_does_not_know_the_method_weight_zero_equals_source_only():
    # weight 0: DANN's model update equals source-only's (the discriminator still trains).
    s_dann, step_dann, _, _ = tiny_setup("dann", weight=0.0)
    s_so, step_so, _, _ = tiny_setup("source_only")
    a, _ = _run(s_dann, step_dann)
    b, _ = _run(s_so, step_so)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
        a.params["model"],
        b.params["model"],
    )


@pytest.mark.parametrize("coeff, reaches", [(1.0, True), (0.0, False)])
def test_dann_gradient_reaches_features_scaled_by_grl_coefficient(
    coeff, reaches, highest_precision
):
    # The warm-start schedule gives coefficient 0 at step 0 (lo=0): no domain gradient yet.
    # Two different programs are compared: at full float32 precision (no TF32 on a GPU)
    # they agree to float rounding (~1e-8 here) when no domain gradient flows; with
    # coefficient 1 the domain gradient moves the kernel by ~4e-2.
    state, step, _, _ = tiny_setup("dann", hparams=dict(grl_lo=coeff, grl_hi=coeff))
    s_so, step_so, _, _ = tiny_setup("source_only")
    a, _ = _run(state, step, n=1)
    b, _ = _run(s_so, step_so, n=1)
    diff = np.abs(
        np.asarray(a.params["model"]["backbone"]["conv1"]["kernel"])
        - np.asarray(b.params["model"]["backbone"]["conv1"]["kernel"])
    ).max()
    assert (diff > 1e-5) == reaches, diff


def test_bfloat16_compute_keeps_float32_params_and_trains():
    state, step, eval_fn, _ = tiny_setup("dann", dtype=jnp.bfloat16)
    s, m = _run(state, step, n=5)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(s.params))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(s.rest))
    assert np.isfinite(float(m["loss"]))
    logits, feats = jax.jit(eval_fn)(s.params, s.rest, random_batch()["source"]["image"])
    assert logits.dtype == jnp.float32 and logits.shape == (8, 4)


def test_donated_state_is_consumed():
    state, step, _, _ = tiny_setup("source_only")
    f = jax.jit(step, donate_argnums=0)
    new, _ = f(state, random_batch())
    assert int(new.step) == 1
    with pytest.raises(RuntimeError, match="deleted|donated"):
        np.asarray(state.params["model"]["head"]["kernel"]) + 1


def test_nonfinite_loss_is_flagged_with_step():
    state, step, _, _ = tiny_setup("source_only", lr=1e30)
    f = jax.jit(step, donate_argnums=0)
    first_bad = None
    for i in range(6):
        state, m = f(state, random_batch(seed=i))
        if first_bad is None and not np.isfinite(float(m["loss"])):
            first_bad = i
    assert first_bad is not None
    assert int(state.nonfinite_step) == first_bad


def test_mismatched_domain_shapes_raise():
    state, step, _, _ = tiny_setup("dann")
    batch = random_batch()
    batch["target"]["image"] = batch["target"]["image"][:, :12]
    with pytest.raises(ValueError, match="different shapes"):
        step(state, batch)


@pytest.mark.usefixtures("highest_precision")
def test_eval_mode_uses_running_statistics():
    state, step, eval_fn, _ = tiny_setup("source_only", bottleneck_dim=8)
    x = random_batch()["source"]["image"]
    full, _ = jax.jit(eval_fn)(state.params, state.rest, x)
    single, _ = jax.jit(eval_fn)(state.params, state.rest, x[:1])
    # To float rounding, not bitwise: a batch of 1 and one of 8 are different programs,
    # and on a GPU they may take different conv/matmul kernels (another summation order)
    # even with deterministic ops; with TF32 (the GPU default) they differ at ~1e-3, hence
    # full float32 precision. Batch statistics would differ at O(1).
    np.testing.assert_allclose(full[:1], single, rtol=1e-5, atol=1e-5)


def test_source_only_runs_the_model_on_the_source_batch_only():
    state, step, _, _ = tiny_setup("source_only")
    batch = random_batch()
    jaxpr = str(jax.make_jaxpr(step)(state, batch))
    # The first convolution's input has the source batch size (8), not 16.
    assert "f32[8,12,12,4]" in jaxpr and "f32[16,12,12,4]" not in jaxpr
    batch["target"]["image"] = np.full_like(batch["target"]["image"], np.nan)
    _, m = jax.jit(step)(state, batch)
    assert np.isfinite(float(m["loss"]))

"""L2-SP, DELTA, BSS and LwF as methods: each loss against its equation on a tiny LeNet,
the starting point captured after the (emulated) ``init_from``, and the gradient reaching
the right parameters (plain SGD: the difference of two updates that differ only in the
method weight is ``-lr ·`` the method loss's gradient)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.inductive.helpers import LR, batch, flat, model_outputs, setup
from tljax import methods
from tljax.checkpoint import Checkpointer
from tljax.losses.bsp import bss
from tljax.methods.bss import bss_gram

# Losses and updates compared with NumPy evaluations of the equations at 1e-4..1e-6:
# full float32 matmuls (GPUs default to TF32, ~1e-3; tests/conftest.py).
pytestmark = pytest.mark.usefixtures("highest_precision")

ALPHA, BETA = 0.3, 0.2


def _isolated_update(s, state, b):
    """``(params after a weight-1 step) − (after a weight-0 step)`` from the same state."""
    one, m1 = s.step_with(1.0)(state, b)
    zero, _ = s.step_with(0.0)(state, b)
    a, z = flat(one.params), flat(zero.params)
    return {k: a[k] - z[k] for k in a}, m1


def _start_params(state):
    """The captured starting point ``w⁰`` (model parameters only), by path."""
    start = {k.replace("method/start/", "model/"): v for k, v in flat(state.rest).items()}
    return {k: start[k] for k in flat(state.params) if k.startswith("model/")}


def test_l2sp_captures_the_loaded_weights_and_matches_the_equation():
    s = setup("l2sp", hparams=dict(alpha=ALPHA, beta=BETA))
    loaded = flat(s.state.params)  # w⁰: after the emulated init_from, not Method.init's copy
    step = s.step
    state, m0 = step(s.state, batch(seed=0))
    w0 = _start_params(state)
    for k, v in w0.items():
        np.testing.assert_array_equal(v, loaded[k], err_msg=k)
    # At step 0, w = w⁰: only the new head's decay remains.
    head0 = sum(np.sum(v**2) for k, v in loaded.items() if k.startswith("model/head/"))
    np.testing.assert_allclose(float(m0["method_loss"]), BETA / 2 * head0, rtol=1e-5)
    w = flat(state.params)
    expected = ALPHA / 2 * sum(
        np.sum((w[k] - w0[k]) ** 2) for k in w0 if k.startswith("model/backbone/")
    ) + BETA / 2 * sum(np.sum(w[k] ** 2) for k in w0 if k.startswith("model/head/"))
    diff, m1 = _isolated_update(s, state, batch(seed=1))
    np.testing.assert_allclose(float(m1["method_loss"]), expected, rtol=1e-5)
    # ∂/∂w: α (w − w⁰) on the shared backbone, β w on the new head.
    for k in w0:
        grad = ALPHA * (w[k] - w0[k]) if k.startswith("model/backbone/") else BETA * w[k]
        np.testing.assert_allclose(diff[k], -LR * grad, atol=1e-6, err_msg=k)
    # The starting point stays put after step 0.
    later, _ = step(state, batch(seed=1))
    for k, v in _start_params(later).items():
        np.testing.assert_array_equal(v, w0[k])


def test_l2sp_respects_frozen_rules():
    s = setup("l2sp", rules=((r"^model/backbone/conv1/", None), (".*", 1.0)))
    state, _ = s.step(s.state, batch(seed=0))
    state, _ = s.step(state, batch(seed=1))
    before, after = flat(s.state.params), flat(state.params)
    for k in ("model/backbone/conv1/kernel", "model/backbone/conv1/bias"):
        np.testing.assert_array_equal(before[k], after[k])
    assert not np.array_equal(
        before["model/backbone/conv2/kernel"], after["model/backbone/conv2/kernel"]
    )


def test_delta_matches_the_equation_and_leaves_the_head_to_beta():
    # conv1 unweighted (BehavioralRegularization), conv2 with channel attention.
    weights = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    hp = dict(alpha=ALPHA, beta=BETA, channel_weights={"conv2": tuple(weights)})
    s = setup("delta", hparams=hp)
    state, m0 = s.step(s.state, batch(seed=0))
    assert float(m0["delta/feature_distance"]) == pytest.approx(0.0, abs=1e-9)
    b = batch(seed=1)
    x = b["source"]["image"]
    w0 = {k[len("model/") :]: v for k, v in _start_params(state).items()}
    _, out = model_outputs(s.graphs, state.params, state.rest, x)
    _, out0 = model_outputs(s.graphs, state.params, state.rest, x, _nest(w0))
    dist = 0.5 * np.sum((out["conv1"] - out0["conv1"]) ** 2)
    d2 = (out["conv2"] - out0["conv2"]) ** 2
    n, h, w, c = d2.shape
    dist += 0.5 * np.sum(c * weights * d2.reshape(n, -1, c).sum(1)) / (h * w)
    p = flat(state.params)
    head = 0.5 * sum(np.sum(p[k] ** 2) for k in p if k.startswith("model/head/"))
    diff, m1 = _isolated_update(s, state, b)
    np.testing.assert_allclose(float(m1["delta/feature_distance"]), dist, rtol=1e-4)
    np.testing.assert_allclose(float(m1["method_loss"]), ALPHA * dist + BETA * head, rtol=1e-4)
    # The feature maps do not depend on the head: its gradient is β w alone.
    for k in ("model/head/kernel", "model/head/bias"):
        np.testing.assert_allclose(diff[k], -LR * BETA * p[k], atol=1e-6)
    assert np.abs(diff["model/backbone/conv1/kernel"]).max() > 1e-6


def test_bss_is_the_smallest_singular_value_of_the_source_features():
    s = setup("bss", hparams=dict(k=2), pretrained_shift=None)
    b = batch(seed=0, target_shape=(5, 5, 1))  # the target batch is never forwarded
    diff, m = _isolated_update(s, s.state, b)
    _, out = model_outputs(s.graphs, s.state.params, s.state.rest, b["source"]["image"])
    sv = np.linalg.svd(out["features"].astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(float(m["method_loss"]), np.sum(sv[-2:] ** 2), rtol=1e-4)
    # The Gram-matrix solver equals the SVD loss of tljax.losses.bsp, value and gradient,
    # whichever side of the matrix is smaller.
    gram = jax.value_and_grad(lambda y: bss_gram(y, k=2))
    svd = jax.value_and_grad(lambda y: bss(y, k=2))
    both = jax.jit(lambda x: (gram(x), svd(x)))
    rng = np.random.default_rng(0)
    for shape in ((6, 9), (9, 6)):
        (v_gram, g_gram), (v_svd, g_svd) = both(jnp.asarray(rng.normal(size=shape), jnp.float32))
        np.testing.assert_allclose(v_gram, v_svd, rtol=1e-4)
        np.testing.assert_allclose(g_gram, g_svd, atol=1e-4)
    assert np.abs(diff["model/backbone/conv1/kernel"]).max() > 0
    np.testing.assert_array_equal(diff["model/head/kernel"], 0.0)  # BSS acts on features
    assert methods.get("bss").needs_target is False


def _fake_pretrained(tmp_path, feature_dim=36, old_classes=10):
    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(feature_dim, old_classes)).astype(np.float32)
    bias = rng.normal(size=(old_classes,)).astype(np.float32)
    tree = {"params": {"model": {"head": {"kernel": kernel, "bias": bias}}}, "rest": {"x": bias}}
    with Checkpointer(str(tmp_path)) as ckpt:
        ckpt.save(1, tree, {})
    return kernel, bias


def test_lwf_distils_the_old_head_of_the_pretrained_run(tmp_path):
    kernel, bias = _fake_pretrained(tmp_path)
    s = setup("lwf", hparams=dict(old_head_from=str(tmp_path), temperature=2.0))
    p0 = flat(s.state.params)
    np.testing.assert_array_equal(p0["method/old_head/kernel"], kernel)
    state, m0 = s.step(s.state, batch(seed=0))
    # Student = teacher at the starting point.
    assert float(m0["method_loss"]) == pytest.approx(0.0, abs=1e-7)
    assert float(m0["lwf/old_task_agreement"]) == 1.0
    b = batch(seed=1)
    x = b["source"]["image"]
    p = flat(state.params)
    w0 = {k[len("model/") :]: v for k, v in _start_params(state).items()}
    _, out = model_outputs(s.graphs, state.params, state.rest, x)
    _, out0 = model_outputs(s.graphs, state.params, state.rest, x, _nest(w0))
    student = out["features"] @ p["method/old_head/kernel"] + p["method/old_head/bias"]
    teacher = out0["features"] @ kernel + bias
    log_q = _log_softmax(student / 2.0)
    log_p = _log_softmax(teacher / 2.0)
    expected = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))
    diff, m1 = _isolated_update(s, state, b)
    np.testing.assert_allclose(float(m1["method_loss"]), expected, rtol=1e-4)
    assert np.abs(diff["method/old_head/kernel"]).max() > 0  # the old head trains
    assert np.abs(diff["model/backbone/conv2/kernel"]).max() > 0
    np.testing.assert_array_equal(diff["model/head/kernel"], 0.0)  # new head: CE only


def test_bad_hyperparameters_are_clear_errors(tmp_path):
    cases = [
        ("l2sp", dict(alpha=-1.0), "alpha"),
        ("l2sp", dict(shared="("), "regex"),
        ("l2sp", dict(bn_stats="train"), "bn_stats"),
        ("delta", dict(layers=()), "layers"),
        ("delta", dict(layers=("conv1",), channel_weights={"conv2": (1.0,)}), "conv2"),
        ("bss", dict(k=0), "k must"),
        ("bss", dict(solver="qr"), "solver"),
        ("lwf", dict(), "old_head_from"),
        ("lwf", dict(old_head_from="x", temperature=0.0), "temperature"),
        ("finetune", dict(bn_stats="x"), "bn_stats"),
        ("simclr", dict(temperature=0.0), "temperature"),
        ("simclr", dict(min_scale=0.0), "min_scale"),
    ]
    for name, hp, match in cases:
        with pytest.raises(ValueError, match=match):
            methods.get(name, **hp)
    with pytest.raises(ValueError, match="not outputs of the model"):
        s = setup("delta", hparams=dict(layers=("layer9",)))
        s.step(s.state, batch())
    _fake_pretrained(tmp_path, feature_dim=10)
    with pytest.raises(ValueError, match="10-d features"):
        setup("lwf", hparams=dict(old_head_from=str(tmp_path)))


def _nest(flat_params: dict) -> dict:
    out: dict = {}
    for path, v in flat_params.items():
        node = out
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = v
    return out


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))

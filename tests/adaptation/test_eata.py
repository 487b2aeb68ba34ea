"""EATA/ETA: selection masks and weights, the moving average, the Fisher penalty and its
gradient against NumPy (float64); one update against a hand-written loss; what moves."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tljax import adaptation, methods, optim
from tljax.adaptation import Context, base, eata
from tljax.models import build_classifier
from tljax.train import build_net


@pytest.fixture(scope="module")
def ctx():
    """An MLP (8 hidden units) with a BatchNorm bottleneck: compiles about twice as fast
    as the DTN of ``conftest.tiny_context`` and has a BatchNorm layer to adapt."""
    model = build_classifier("mlp", (8, 8, 2), 3, rngs=nnx.Rngs(0), bottleneck_dim=6, hidden=(8,))
    graphs, params, rest = build_net(model, methods.get("source_only"), seed=0, num_classes=3)
    return Context(graphs, params, rest, 3)


def _np_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_entropy(p):
    return -np.sum(p * np.log(p), axis=-1)


def _flat(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {optim.path_str(p): np.asarray(v) for p, v in leaves}


def _np_select(z, m, has_m, e0, eps):
    p = _np_softmax(z)
    h = _np_entropy(p)
    sel = h < e0
    if has_m:
        cos = p @ m / (np.linalg.norm(p, axis=1) * np.linalg.norm(m))
        sel &= np.abs(cos) < eps
    return sel, 1.0 / np.exp(h - e0), h


@pytest.mark.parametrize("has_avg", [False, True])
def test_select_vs_numpy(has_avg):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(64, 10)) * rng.uniform(0.1, 6.0, (64, 1))).astype(np.float32)
    m = _np_softmax(rng.normal(size=(1, 10)) * 2.0)[0]
    e0, eps = 0.4 * math.log(10), 0.4
    sel, w, h = eata.select(
        jnp.asarray(z), jnp.asarray(m, jnp.float32), jnp.asarray(has_avg), e_margin=e0, d_margin=eps
    )
    want_sel, want_w, want_h = _np_select(z, m, has_avg, e0, eps)
    # Both filters must bite somewhere for the test to mean anything.
    assert 0 < want_sel.sum() < (_np_entropy(_np_softmax(z)) < e0).sum() or not has_avg
    assert 0 < want_sel.sum() < len(z)
    np.testing.assert_array_equal(np.asarray(sel), want_sel)
    np.testing.assert_allclose(np.asarray(w), want_w, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(h), want_h, rtol=1e-5, atol=1e-6)
    # A sample at the margin weighs 1; more confident ones weigh more.
    assert np.all((np.asarray(w) > 1) == (want_h < e0))


def test_moving_average_vs_numpy():
    rng = np.random.default_rng(1)
    p = _np_softmax(rng.normal(size=(8, 5)))
    sel = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    m = _np_softmax(rng.normal(size=(1, 5)))[0]
    args = (jnp.asarray(p, jnp.float32), jnp.asarray(sel))
    # none yet: the mean of the selected
    got, has = eata.update_avg_probs(jnp.zeros(5), jnp.asarray(False), *args)
    np.testing.assert_allclose(np.asarray(got), p[sel].mean(0), rtol=1e-6)
    assert bool(has)
    # then 0.9 m + 0.1 mean (the official update_model_probs)
    got, _ = eata.update_avg_probs(jnp.asarray(m, jnp.float32), jnp.asarray(True), *args)
    np.testing.assert_allclose(np.asarray(got), 0.9 * m + 0.1 * p[sel].mean(0), rtol=1e-6)
    # nothing selected: unchanged, and still none if there was none
    none = jnp.zeros(8, bool)
    got, has = eata.update_avg_probs(jnp.asarray(m, jnp.float32), jnp.asarray(True), args[0], none)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(m, np.float32))
    assert not bool(eata.update_avg_probs(jnp.zeros(5), jnp.asarray(False), args[0], none)[1])


def test_fisher_penalty_value_and_gradient_vs_numpy():
    rng = np.random.default_rng(2)
    shapes = {"a": (3, 4), "b": {"c": (5,), "d": (2, 2)}}
    draw = lambda s: rng.normal(size=s)  # noqa: E731
    th = jax.tree.map(draw, shapes, is_leaf=lambda s: isinstance(s, tuple))
    th0 = jax.tree.map(draw, shapes, is_leaf=lambda s: isinstance(s, tuple))
    fi = jax.tree.map(
        lambda s: rng.uniform(0, 2, s), shapes, is_leaf=lambda s: isinstance(s, tuple)
    )
    f32 = lambda t: jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), t)  # noqa: E731
    alpha = 3.5
    want = alpha * sum(
        np.sum(f * (p - q) ** 2)
        for f, p, q in zip(jax.tree.leaves(fi), jax.tree.leaves(th), jax.tree.leaves(th0))
    )
    got = eata.fisher_penalty(f32(th), f32(th0), f32(fi), alpha)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    grad = jax.grad(lambda t: eata.fisher_penalty(t, f32(th0), f32(fi), alpha))(f32(th))
    for g, f, p, q in zip(
        jax.tree.leaves(grad), jax.tree.leaves(fi), jax.tree.leaves(th), jax.tree.leaves(th0)
    ):
        np.testing.assert_allclose(np.asarray(g), 2 * alpha * f * (p - q), rtol=1e-5, atol=1e-6)
    assert float(eata.fisher_penalty(f32(th0), f32(th0), f32(fi), alpha)) == 0.0


@pytest.mark.usefixtures("highest_precision")
def test_fisher_is_the_mean_squared_pseudo_label_gradient(ctx, stream):
    x = stream[0][:16]
    m = adaptation.get("eata", ctx, fisher_x=x, fisher_batch_size=8)

    def ce(params, xb):  # CE of the argmax of the model's own batch-statistics logits
        z = base.forward(ctx, params, ctx.rest, xb, batch_stats=True)[0]
        y = jnp.argmax(jax.lax.stop_gradient(z), -1)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], 1))

    hand_grad = jax.jit(jax.grad(ce))
    g1, g2 = (_flat(hand_grad(ctx.params, jnp.asarray(xb))) for xb in (x[:8], x[8:]))
    got = _flat(m.init().extra["fisher"])
    trained = set(m.hparams["trained"])
    assert trained == {
        f"{p}/{a}" for p in base.batch_norm_param_paths(ctx) for a in ("scale", "bias")
    }
    assert m.hparams["fisher_examples"] == 16
    for k in got:
        if k not in trained:
            assert not got[k].any(), k
        else:
            want = (np.float64(g1[k]) ** 2 + np.float64(g2[k]) ** 2) / 2
            np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-10)
            assert got[k].any(), k


@pytest.mark.usefixtures("highest_precision")
def test_update_is_sgd_on_the_hand_written_loss(ctx, stream):
    """At perturbed BN weights, one SGD step = −lr · ∇(weighted entropy of the selected
    samples + the Fisher term), masks recomputed in NumPy; only BN affine params move."""
    x = jnp.asarray(stream[0][:16])
    fwd = jax.jit(lambda p: base.forward(ctx, p, ctx.rest, x, batch_stats=True)[0])
    h0 = _np_entropy(_np_softmax(fwd(ctx.params)))
    frac = float(np.median(h0)) / math.log(ctx.num_classes)  # about half reliable
    lr, alpha = 0.5, 50.0
    m = adaptation.get(
        "eata",
        ctx,
        lr=lr,
        optimizer="sgd",
        momentum=0.0,
        e_margin_frac=frac,
        d_margin=2.0,  # every reliable sample is novel: the redundancy filter off
        fisher_alpha=alpha,
    )
    state = m.init()
    rng = np.random.default_rng(3)
    trained = set(m.hparams["trained"])
    flat0 = _flat(ctx.params)
    moved = {k: v + (rng.normal(0, 0.1, v.shape) if k in trained else 0) for k, v in flat0.items()}
    leaves = [jnp.asarray(moved[optim.path_str(p)], v.dtype) for p, v in
              jax.tree_util.tree_flatten_with_path(ctx.params)[0]]  # fmt: skip
    params = jax.tree.unflatten(jax.tree.structure(ctx.params), leaves)
    state = state.replace(params=params)
    new, logits, metrics = jax.jit(m.update)(state, x, None)
    # step 0: the Fisher comes from this batch at the source weights
    fisher = _flat(new.extra["fisher"])
    e0 = frac * math.log(ctx.num_classes)
    sel, w, h = _np_select(np.asarray(logits), None, False, e0, 2.0)
    assert 0 < sel.sum() < len(sel)
    np.testing.assert_allclose(float(metrics["selected"]), sel.mean())

    def loss(params):
        z = fwd(params)
        ent = -jnp.sum(jax.nn.softmax(z) * jax.nn.log_softmax(z), -1)
        data = jnp.sum(jnp.asarray(sel * w) * ent) / sel.sum()
        pen = sum(
            jnp.sum(jnp.asarray(fisher[k]) * (v - flat0[k]) ** 2)
            for k, v in _flat_jnp(params).items()
        )
        return data + alpha * pen

    value, g = jax.jit(jax.value_and_grad(loss))(params)
    g = _flat(g)
    np.testing.assert_allclose(float(metrics["loss"]), float(value), rtol=1e-4)
    got = _flat(new.params)
    for k in flat0:
        if k in trained:
            np.testing.assert_allclose(got[k], moved[k] - lr * g[k], rtol=1e-4, atol=1e-6)
        else:
            assert got[k].tobytes() == flat0[k].tobytes(), k
    # The moving average starts as the mean probability of the selected samples.
    np.testing.assert_allclose(
        np.asarray(new.extra["avg_probs"]), _np_softmax(logits)[sel].mean(0), rtol=1e-5
    )


def _flat_jnp(tree):
    return {optim.path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_no_selected_sample_no_step_and_eta_has_no_fisher(ctx, stream):
    x = jnp.asarray(stream[0][:16])
    m = adaptation.get("eta", ctx, e_margin_frac=1e-6, lr=1.0)
    assert m.name == "eta" and m.hparams["fisher"] == "none"
    s0 = m.init()
    assert "fisher" not in s0.extra
    s1, _, metrics = jax.jit(m.update)(s0, x, None)
    assert float(metrics["selected"]) == 0.0 and int(s1.step) == 1
    before, after = (jax.tree.leaves((s.params, s.opt_state)) for s in (s0, s1))
    for a, b in zip(before, after):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert not bool(s1.extra["has_avg"])
    with pytest.raises(ValueError, match="fisher"):
        adaptation.get("eta", ctx, fisher_alpha=1.0)
    with pytest.raises(ValueError, match="fisher_alpha"):
        adaptation.get("eata", ctx, fisher_alpha=-1.0)
    assert {"eata", "eta", "cotta"} <= set(adaptation.names())

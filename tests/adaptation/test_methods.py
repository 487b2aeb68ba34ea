"""Test-time adaptation methods: objectives vs NumPy, what each one updates, T3A vs a
NumPy transcription of DomainBed's loop, BN adaptation = AdaBN on the batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax import adaptation, optim
from tljax.adaptation import base, shot
from tljax.bn import adapt_batch_norm
from tljax.train import make_eval_step


def _np_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_entropy(p):
    return -np.sum(p * np.log(p), axis=-1)


def _flat(tree):
    def host(v):
        if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            v = jax.random.key_data(v)
        return np.asarray(v)

    return {optim.path_str(p): host(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


_FORWARD: dict = {}


def _forward(ctx, x, batch_stats):
    """The model's forward pass, jitted once per (context, BN mode)."""
    key = (id(ctx), batch_stats)
    if key not in _FORWARD:
        _FORWARD[key] = jax.jit(lambda p, r, x: base.forward(ctx, p, r, x, batch_stats=batch_stats))
    return _FORWARD[key](ctx.params, ctx.rest, x)


def test_im_loss_vs_numpy():
    z = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32) * 2
    p = _np_softmax(z)
    ent, div = _np_entropy(p).mean(), _np_entropy(p.mean(0))
    loss, m = shot.im_loss(jnp.asarray(z), diversity_weight=0.5)
    np.testing.assert_allclose(float(m["entropy_term"]), ent, rtol=1e-5)
    np.testing.assert_allclose(float(m["diversity"]), div, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ent - 0.5 * div, rtol=1e-5)
    # Bounds: -log C <= IM (lambda = 1) <= 0.
    assert -np.log(5) - 1e-6 <= float(shot.im_loss(jnp.asarray(z))[0]) <= 1e-6


def test_tent_loss_is_the_mean_entropy_and_updates_only_bn_affine(ctx, stream):
    x = jnp.asarray(stream[0][:16])
    m = adaptation.get("tent", ctx, lr=1e-2)
    state0 = m.init()
    before = _flat(state0.params)
    state, logits, metrics = jax.jit(m.update)(state0, x, jax.random.key(0))
    np.testing.assert_allclose(
        float(metrics["loss"]), _np_entropy(_np_softmax(logits)).mean(), rtol=1e-5
    )
    after = _flat(state.params)
    bn_affine = [k for k in before if k.rsplit("/", 1)[-1] in ("scale", "bias")]
    bn_affine = [k for k in bn_affine if "norm" in k or "/bn/" in k]
    assert len(bn_affine) == 2 * len(base.batch_norm_param_paths(ctx))
    for k in before:
        if k in bn_affine:
            assert not np.array_equal(before[k], after[k]), k
        else:
            assert before[k].tobytes() == after[k].tobytes(), k
    assert sorted(m.hparams["trained"]) == sorted(bn_affine)
    # The predictions are the forward pass with batch statistics, before the update.
    ref = _forward(ctx, x, True)[0]
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-6)
    # Running statistics are not touched.
    for k, v in _flat(ctx.rest).items():
        assert v.tobytes() == _flat(state.rest)[k].tobytes()
    # Entropy goes down on the batch it adapted to.
    m2 = adaptation.get("tent", ctx, lr=5e-2)
    s = m2.init()
    losses = []
    update = jax.jit(m2.update)
    for _ in range(5):
        s, _, mm = update(s, x, jax.random.key(0))
        losses.append(float(mm["loss"]))
    assert losses[-1] < losses[0]


def test_tent_sgd_step_matches_a_hand_gradient_step(ctx, stream):
    """One plain-SGD step: the BN affine params move by -lr * grad of the mean entropy."""
    x = jnp.asarray(stream[0][:16])
    m = adaptation.get("tent", ctx, lr=0.1, optimizer="sgd", momentum=0.0)
    state, _, _ = jax.jit(m.update)(m.init(), x)

    def loss(params):
        z = base.forward(ctx, params, ctx.rest, x, batch_stats=True)[0]
        p = jax.nn.softmax(z)
        return -jnp.mean(jnp.sum(p * jnp.log(p), -1))

    g = _flat(jax.jit(jax.grad(loss))(ctx.params))
    p0, p1 = _flat(ctx.params), _flat(state.params)
    for k in m.hparams["trained"]:
        np.testing.assert_allclose(p1[k], p0[k] - 0.1 * g[k], rtol=1e-4, atol=1e-6)


def test_shot_im_freezes_the_head(ctx, stream):
    x = jnp.asarray(stream[0][:16])
    m = adaptation.get("shot_im", ctx, lr=1e-2)
    state, logits, metrics = jax.jit(m.update)(m.init(), x)
    before, after = _flat(ctx.params), _flat(state.params)
    for k in before:
        if k.startswith("model/head/"):
            assert before[k].tobytes() == after[k].tobytes(), k
        else:
            assert not np.array_equal(before[k], after[k]), k
    loss, _ = shot.im_loss(logits)
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-5)


def test_bn_adapt_is_adabn_on_the_batch(ctx, stream):
    x = stream[0][:16]
    m = adaptation.get("bn_adapt", ctx)
    _, logits, _ = m.update(m.init(), jnp.asarray(x))
    rest = adapt_batch_norm(ctx.graphs, ctx.params, ctx.rest, x, batch_size=len(x))
    ref, _ = jax.jit(make_eval_step(ctx.graphs))(ctx.params, rest, jnp.asarray(x))
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    src, _ = jax.jit(make_eval_step(ctx.graphs))(ctx.params, ctx.rest, jnp.asarray(x))
    assert not np.allclose(logits, src, atol=1e-3)
    # The first BatchNorm normalises with the batch's own moments: check it in NumPy.
    from flax import nnx

    net = nnx.merge(ctx.graphs.eval_graph, ctx.params, ctx.rest)
    h = np.asarray(net.model.backbone.convs[0](jnp.asarray(x)), np.float64)
    bn = net.model.backbone.norms[0]
    mu, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
    want = (h - mu) / np.sqrt(var + bn.epsilon) * np.asarray(bn.scale) + np.asarray(bn.bias)
    for layer in (bn,):
        layer.use_running_average = False
    np.testing.assert_allclose(np.asarray(bn(jnp.asarray(h, jnp.float32))), want, atol=1e-4)


def _np_t3a(w, b, batches_z, filter_k):
    """DomainBed's T3A (algorithms.py), transcribed to NumPy: concatenate, sort each
    class's entropies, keep the first filter_K."""

    def head(z):
        return z @ w + b

    def onehot(i):
        return np.eye(w.shape[1])[i]

    sup = w.T.astype(np.float64)
    p = _np_softmax(head(sup))
    labels, ent = onehot(p.argmax(1)), _np_entropy(p)
    outs = []
    for z in batches_z:
        p = _np_softmax(head(z))
        sup = np.concatenate([sup, z])
        labels = np.concatenate([labels, onehot(p.argmax(1))])
        ent = np.concatenate([ent, _np_entropy(p)])
        yhat = labels.argmax(1)
        keep = []
        for c in range(w.shape[1]):
            idx = np.arange(len(ent))[yhat == c]
            keep.append(idx[np.argsort(ent[yhat == c], kind="stable")][:filter_k])
        keep = np.concatenate(keep)
        sup, labels, ent = sup[keep], labels[keep], ent[keep]
        s = sup / np.maximum(np.linalg.norm(sup, axis=1, keepdims=True), 1e-12)
        weights = s.T @ labels
        weights = weights / np.maximum(np.linalg.norm(weights, axis=0, keepdims=True), 1e-12)
        outs.append(z @ weights)
    return outs


@pytest.mark.parametrize("filter_k", [1, 3])
def test_t3a_matches_domainbed_loop(ctx, stream, filter_k):
    x = stream[0]
    m = adaptation.get("t3a", ctx, filter_k=filter_k)
    state = m.init()
    update = jax.jit(m.update)
    zs, got = [], []
    for i in range(4):
        xb = jnp.asarray(x[i * 10 : (i + 1) * 10])
        zs.append(
            np.asarray(
                _forward(ctx, xb, False)[1]["features"],
                np.float64,
            )
        )
        state, logits, metrics = update(state, xb, None)
        got.append(np.asarray(logits))
    want = _np_t3a(
        np.asarray(ctx.params["model"]["head"]["kernel"], np.float64),
        np.asarray(ctx.params["model"]["head"]["bias"], np.float64),
        zs,
        filter_k,
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert float(metrics["supports"]) <= filter_k * ctx.num_classes
    # No weight changes.
    for k, v in _flat(ctx.params).items():
        assert v.tobytes() == _flat(state.params)[k].tobytes()


def test_errors(ctx):
    with pytest.raises(ValueError, match="Unknown test-time adaptation method 'tnet'.*'tent'"):
        adaptation.get("tnet", ctx)
    with pytest.raises(ValueError, match="filter_k must be >= 1"):
        adaptation.get("t3a", ctx, filter_k=-1)
    with pytest.raises(ValueError, match="unexpected keyword"):
        adaptation.get("tent", ctx, learning_rate=1.0)
    assert "source" in adaptation.names() and "tent" in adaptation.names()


def test_methods_that_need_batch_norm_refuse_a_model_without_it():
    from flax import nnx

    from tljax import methods
    from tljax.adaptation import Context
    from tljax.models import build_classifier
    from tljax.train import build_net

    model = build_classifier("lenet", (16, 16, 1), 3, rngs=nnx.Rngs(0), channels=(2, 4))
    graphs, params, rest = build_net(model, methods.get("source_only"), seed=0, num_classes=3)
    plain = Context(graphs, params, rest, 3)
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adaptation.get("tent", plain)
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adaptation.get("bn_adapt", plain)
    adaptation.get("t3a", plain)  # needs no BatchNorm
    adaptation.get("shot_im", plain)


def _np_obtain_label(feats, logits):
    """SHOT's obtain_label (image_target.py; distance='cosine', threshold=0) in NumPy."""
    from scipy.spatial.distance import cdist

    all_fea = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    all_fea = (all_fea.T / np.linalg.norm(all_fea, axis=1)).T
    aff = _np_softmax(logits)
    k = aff.shape[1]
    initc = aff.T @ all_fea / (1e-8 + aff.sum(axis=0)[:, None])
    cls_count = np.eye(k)[aff.argmax(1)].sum(axis=0)
    labelset = np.where(cls_count > 0)[0]
    pred = labelset[cdist(all_fea, initc[labelset], "cosine").argmin(axis=1)]
    for _ in range(1):
        aff = np.eye(k)[pred]
        initc = aff.T @ all_fea / (1e-8 + aff.sum(axis=0)[:, None])
        pred = labelset[cdist(all_fea, initc[labelset], "cosine").argmin(axis=1)]
    return pred


def test_shot_cluster_labels_vs_numpy():
    rng = np.random.default_rng(3)
    for trial in range(5):
        # Four noisy clusters of features, noisy logits (no cluster ends up empty: the
        # reference's cdist then gives NaN distances, see shot.cluster_labels).
        centers = rng.normal(size=(4, 6)) * 2
        lab = rng.integers(0, 4, 40)
        feats = centers[lab] + rng.normal(size=(40, 6))
        logits = rng.normal(size=(40, 4)) + 1.0 * np.eye(4)[lab]
        got = np.asarray(shot.cluster_labels(jnp.asarray(feats), jnp.asarray(logits)))
        np.testing.assert_array_equal(got, _np_obtain_label(feats, logits), err_msg=str(trial))


def test_shot_adds_the_pseudo_label_term(ctx, stream):
    x = jnp.asarray(stream[0][:16])
    full = adaptation.get("shot", ctx, lr=1e-2)
    state, logits, metrics = jax.jit(full.update)(full.init(), x)
    feats = _forward(ctx, x, True)[1]["features"]
    labels = np.asarray(shot.cluster_labels(feats, logits))
    p = _np_softmax(logits)
    ce = -np.mean(np.log(p[np.arange(16), labels]))
    im, _ = shot.im_loss(logits)
    np.testing.assert_allclose(float(metrics["pseudo_ce"]), ce, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["loss"]), float(im) + 0.3 * ce, rtol=1e-4)
    assert full.name == "shot" and full.hparams["beta"] == 0.3
    head = _flat(state.params)["model/head/kernel"]
    assert head.tobytes() == _flat(ctx.params)["model/head/kernel"].tobytes()


def test_uint8_inputs_are_converted_in_the_step(ctx):
    """A context's to_float (uint8 pixels -> standardised floats) runs inside the step, so
    uint8 and host-converted float streams give the same predictions."""
    from functools import partial

    from tljax.data import pixels

    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, (12, 8, 8, 2)).astype(np.uint8)
    mean, std = np.array([0.4, 0.5], np.float32), np.array([0.2, 0.3], np.float32)
    c8 = ctx._replace(to_float=partial(pixels.to_float, mean=mean, std=std))
    xf = (raw.astype(np.float32) * pixels.SCALE - mean) / std
    m8, mf = adaptation.get("bn_adapt", c8), adaptation.get("bn_adapt", ctx)
    l8 = jax.jit(m8.update)(m8.init(), jnp.asarray(raw))[1]
    lf = jax.jit(mf.update)(mf.init(), jnp.asarray(xf))[1]
    np.testing.assert_allclose(l8, lf, rtol=1e-5, atol=1e-5)

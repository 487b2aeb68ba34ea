"""CoTTA: EMA, stochastic-restore statistics, soft cross-entropy and the augmentation
views against NumPy; one update against a hand computation (target = the mean of the
teacher's logits over the views, SGD student step, EMA teacher); what moves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tljax import adaptation, methods, optim
from tljax.adaptation import Context, base, cotta
from tljax.models import build_classifier
from tljax.train import build_net

_augment = jax.jit(cotta.augment, static_argnames=("flip", "noise"))
_augment_u = jax.jit(cotta.augment_from_uniform, static_argnames=("flip", "noise"))


_FWD: dict = {}


@pytest.fixture(scope="module")
def ctx():
    """An MLP (8 hidden units) with a BatchNorm bottleneck: compiles about twice as fast
    as the DTN of ``conftest.tiny_context`` and has a BatchNorm layer to adapt."""
    model = build_classifier("mlp", (8, 8, 2), 3, rngs=nnx.Rngs(0), bottleneck_dim=6, hidden=(8,))
    graphs, params, rest = build_net(model, methods.get("source_only"), seed=0, num_classes=3)
    return Context(graphs, params, rest, 3)


def _fwd(ctx):
    """The model with batch statistics, ``(params, x) -> logits``, jitted once."""
    if id(ctx) not in _FWD:
        _FWD[id(ctx)] = jax.jit(
            lambda p, xb: base.forward(ctx, p, ctx.rest, xb, batch_stats=True)[0]
        )
    return _FWD[id(ctx)]


def _flat(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {optim.path_str(p): np.asarray(v) for p, v in leaves}


def _np_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ema_and_soft_cross_entropy_vs_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    got = cotta.ema({"w": jnp.asarray(t, jnp.float32)}, {"w": jnp.asarray(s, jnp.float32)}, 0.9)
    np.testing.assert_allclose(np.asarray(got["w"]), 0.9 * t + 0.1 * s, rtol=1e-6, atol=1e-7)
    z, zt = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2
    want = -np.mean(np.sum(_np_softmax(zt) * np.log(_np_softmax(z)), 1))
    got = cotta.soft_cross_entropy(jnp.asarray(z, jnp.float32), jnp.asarray(zt, jnp.float32))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    # No gradient flows into the target.
    g = jax.grad(lambda b: cotta.soft_cross_entropy(jnp.asarray(z, jnp.float32), b))(
        jnp.asarray(zt, jnp.float32)
    )
    assert not np.asarray(g).any()


def test_stochastic_restore_statistics():
    n = 200_000
    params = {"a": jnp.ones((n,)), "b": jnp.ones((50,))}
    source = {"a": jnp.zeros((n,)), "b": jnp.zeros((50,))}
    trained = {"a": True, "b": False}
    p = 0.01
    masks = []
    for seed in range(3):
        out = cotta.stochastic_restore(params, source, trained, jax.random.key(seed), p)
        a = np.asarray(out["a"])
        assert set(np.unique(a)) <= {0.0, 1.0}
        assert np.asarray(out["b"]).tobytes() == np.asarray(params["b"]).tobytes()
        k = int((a == 0).sum())
        # Binomial(n, p): within 5 standard deviations of n p.
        assert abs(k - n * p) < 5 * np.sqrt(n * p * (1 - p)), k
        masks.append(a == 0)
    # Independent draws per key: overlaps as for independent Bernoulli(p) masks.
    both = int((masks[0] & masks[1]).sum())
    assert abs(both - n * p * p) < 5 * np.sqrt(n * p * p) + 1, both
    for q, want in ((0.0, 1.0), (1.0, 0.0)):
        out = cotta.stochastic_restore(params, source, trained, jax.random.key(0), q)
        assert np.all(np.asarray(out["a"]) == want)


def test_augment_keeps_shape_dtype_and_range():
    rng = np.random.default_rng(1)
    x8 = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    xf = rng.normal(size=(5, 12, 12, 1)).astype(np.float32)
    key = jax.random.key(0)
    a8 = _augment(jnp.asarray(x8), key)
    af = _augment(jnp.asarray(xf), key)
    assert a8.shape == x8.shape and a8.dtype == jnp.uint8
    assert af.shape == xf.shape and af.dtype == jnp.float32
    assert not np.array_equal(np.asarray(a8), x8)
    np.testing.assert_array_equal(np.asarray(_augment(jnp.asarray(x8), key)), np.asarray(a8))
    assert not np.array_equal(np.asarray(_augment(jnp.asarray(x8), jax.random.key(1))), a8)
    # A constant image stays constant up to brightness, gamma and the noise (borders
    # are replicated, not filled): no geometric artefact.
    const = np.full((2, 12, 12, 1), 0.5, np.float32)
    out = np.asarray(_augment(jnp.asarray(const), key, noise=0.0))
    assert np.allclose(out, out[:, :1, :1], atol=1e-5)


def test_warp_is_bilinear_with_replicated_borders_vs_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(2)
    img = rng.normal(size=(9, 11, 2))
    th, sc, shift = 0.3, 1.1, (0.7, -1.2)
    m = np.array(
        [
            [np.cos(th) / sc, -np.sin(th) / sc, shift[0]],
            [np.sin(th) / sc, np.cos(th) / sc, shift[1]],
        ]
    )
    cy, cx = 4.0, 5.0
    rows, cols = np.meshgrid(np.arange(9) - cy, np.arange(11) - cx, indexing="ij")
    src = np.einsum("ij,jhw->ihw", m, np.stack([rows, cols, np.ones_like(rows)]))
    want = np.stack(
        [
            ndimage.map_coordinates(
                img[..., c], [src[0] + cy, src[1] + cx], order=1, mode="nearest"
            )
            for c in range(2)
        ],
        -1,
    )
    got = cotta._warp(jnp.asarray(img, jnp.float32), jnp.asarray(m, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


@pytest.mark.usefixtures("highest_precision")
def test_update_vs_hand_computation(ctx, stream):
    """ap > 1 (always averaged), N = 3 views, SGD, no restore: the target is the mean
    teacher logits over the views (keys as in ``update``), the student takes one SGD step
    on the soft cross-entropy, the teacher is α θ0 + (1 − α) θ_student."""
    x = jnp.asarray(stream[0][:16])
    lr, alpha, n = 0.5, 0.9, 3
    m = adaptation.get(
        "cotta",
        ctx,
        lr=lr,
        optimizer="sgd",
        momentum=0.0,
        ema_alpha=alpha,
        restore_p=0.0,
        ap=2.0,
        num_augmentations=n,
    )
    rng = jax.random.key(7)
    s1, logits, metrics = jax.jit(m.update)(m.init(), x, rng)
    assert float(metrics["augmented"]) == 1.0
    # The step's one draw: the views' numbers first, then one per trained element.
    per = cotta.uniforms_per_view(x.shape)
    size = n * len(x) * per + sum(v.size for v in jax.tree.leaves(ctx.params))
    u = jax.random.uniform(rng, (size,))[: n * len(x) * per].reshape(n, len(x), per)
    fwd = _fwd(ctx)
    views = [np.asarray(fwd(ctx.params, _augment_u(x, uv)), np.float64) for uv in u]
    target = np.mean(views, 0)
    np.testing.assert_allclose(np.asarray(logits), target, rtol=1e-4, atol=1e-5)
    plain = np.asarray(fwd(ctx.params, x))
    assert not np.allclose(target, plain, atol=1e-3)

    def loss(params):
        z = jax.nn.log_softmax(fwd(params, x))
        return -jnp.mean(jnp.sum(jnp.asarray(_np_softmax(target), jnp.float32) * z, -1))

    value, g = jax.jit(jax.value_and_grad(loss))(ctx.params)
    np.testing.assert_allclose(float(metrics["loss"]), float(value), rtol=1e-4)
    p0, g = _flat(ctx.params), _flat(g)
    student, teacher = _flat(s1.params), _flat(s1.extra["teacher"])
    assert sorted(m.hparams["trained"]) == sorted(p0)  # trainable="all"
    for k in p0:
        want = p0[k] - lr * np.float64(g[k])
        np.testing.assert_allclose(student[k], want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            teacher[k], alpha * p0[k] + (1 - alpha) * want, rtol=1e-4, atol=1e-6
        )
    # Predictions of the state are the teacher's.
    np.testing.assert_allclose(
        np.asarray(jax.jit(m.predict)(s1, x)),
        np.asarray(fwd(s1.extra["teacher"], x)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_confident_anchor_no_augmentation_and_bn_only(ctx, stream):
    """ap = 0: the target is the teacher on the plain batch (= the source model with batch
    statistics at the first step); trainable="bn" leaves all but BN affine bitwise alone;
    restore_p = 1 puts every trained element back to the source after the step."""
    x = jnp.asarray(stream[0][:16])
    m = adaptation.get("cotta", ctx, ap=0.0, trainable="bn", restore_p=1.0, lr=0.1)
    s1, logits, metrics = jax.jit(m.update)(m.init(), x, jax.random.key(0))
    assert float(metrics["augmented"]) == 0.0
    ref = _fwd(ctx)(ctx.params, x)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-5, atol=1e-6)
    p0, student, teacher = _flat(ctx.params), _flat(s1.params), _flat(s1.extra["teacher"])
    trained = set(m.hparams["trained"])
    assert trained == {
        f"{p}/{a}" for p in base.batch_norm_param_paths(ctx) for a in ("scale", "bias")
    }
    for k in p0:
        assert student[k].tobytes() == p0[k].tobytes(), k  # restored or frozen
        if k in trained:
            assert not np.array_equal(teacher[k], p0[k]), k  # the EMA saw the step
        else:
            assert teacher[k].tobytes() == p0[k].tobytes(), k
    with pytest.raises(ValueError, match="trainable"):
        adaptation.get("cotta", ctx, trainable="head")

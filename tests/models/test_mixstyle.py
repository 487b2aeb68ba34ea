"""MixStyle against NumPy float64, its sampling, and the layer in LeNet and ResNet."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import random_batch, tiny_setup
from tljax.models.lenet import lenet
from tljax.models.mixstyle import MixStyle, mix_statistics, mixstyle, mixstyle_partners
from tljax.models.resnet import resnet18

EPS = 1e-6


def ref_stats(x, eps=EPS):
    """Per-example, per-channel mean and sqrt(unbiased variance + eps), by explicit loops."""
    n, h, w, c = x.shape
    mu, sig = np.zeros((n, c)), np.zeros((n, c))
    for i in range(n):
        for k in range(c):
            v = x[i, :, :, k].ravel().astype(np.float64)
            mu[i, k] = v.sum() / v.size
            sig[i, k] = np.sqrt(((v - mu[i, k]) ** 2).sum() / (v.size - 1) + eps)
    return mu, sig


def ref_mix(x, partner, lam, eps=EPS):
    mu, sig = ref_stats(x, eps)
    out = np.empty(x.shape)
    for i in range(len(x)):
        mu_mix = lam[i] * mu[i] + (1 - lam[i]) * mu[partner[i]]
        sig_mix = lam[i] * sig[i] + (1 - lam[i]) * sig[partner[i]]
        out[i] = (x[i] - mu[i]) / sig[i] * sig_mix + mu_mix
    return out


def _maps(seed=0, shape=(6, 4, 5, 3)):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, size=(shape[0], 1, 1, shape[3]))
    shift = rng.normal(size=(shape[0], 1, 1, shape[3]))
    return (scale * rng.normal(size=shape) + shift).astype(np.float32)


def test_mix_statistics_matches_numpy_and_mixed_stats():
    x = _maps()
    partner = np.array([3, 0, 5, 1, 2, 4])
    lam = np.array([0.1, 0.9, 0.5, 0.0, 1.0, 0.3])
    out = jax.jit(mix_statistics)(jnp.asarray(x), jnp.asarray(partner), jnp.asarray(lam))
    assert out.dtype == jnp.float32
    ref = ref_mix(x.astype(np.float64), partner, lam)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # The output carries the mixed statistics: mean μ_mix and std σ_mix (up to the eps term).
    mu, sig = ref_stats(x.astype(np.float64))
    mu_mix = lam[:, None] * mu + (1 - lam[:, None]) * mu[partner]
    sig_mix = lam[:, None] * sig + (1 - lam[:, None]) * sig[partner]
    out_mu, out_sig = ref_stats(np.asarray(out, np.float64), eps=0.0)
    np.testing.assert_allclose(out_mu, mu_mix, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_sig, sig_mix, rtol=1e-4)


def test_lambda_one_is_identity():
    x = _maps(1)
    out = mix_statistics(jnp.asarray(x), jnp.asarray([1, 2, 3, 4, 5, 0]), jnp.ones(6))
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)


def test_no_gradient_through_the_statistics():
    x, w = _maps(2), np.random.default_rng(3).normal(size=(6, 4, 5, 3))
    partner, lam = np.array([5, 4, 3, 2, 1, 0]), np.linspace(0.1, 0.9, 6)
    g = jax.jit(
        jax.grad(lambda a: jnp.sum(jnp.asarray(w) * mix_statistics(a, partner, jnp.asarray(lam))))
    )(jnp.asarray(x))
    # With μ and σ constants, d out / d x = σ_mix / σ per example and channel.
    mu, sig = ref_stats(x.astype(np.float64))
    sig_mix = lam[:, None] * sig + (1 - lam[:, None]) * sig[partner]
    np.testing.assert_allclose(g, w * (sig_mix / sig)[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_mixstyle_applies_to_the_whole_batch_with_probability_p():
    x = jnp.asarray(_maps(4))
    # Cross-domain partners are never the example itself and α = 100 keeps λ near 1/2, so an
    # application changes every example visibly.
    f = functools.partial(mixstyle, p=0.3, alpha=100.0, mode="crossdomain")
    keys = jax.random.split(jax.random.key(0), 200)
    out = np.asarray(jax.jit(jax.vmap(f, in_axes=(None, 0)))(x, keys))
    changed = np.any(np.abs(out - np.asarray(x)[None]) > 1e-3, axis=(2, 3, 4))
    assert np.all(changed.all(axis=1) | ~changed.any(axis=1))
    # Binomial(200, 0.3): mean 60, sd 6.5.
    assert 35 <= changed.any(axis=1).sum() <= 85, changed.any(axis=1).sum()
    np.testing.assert_array_equal(mixstyle(x, jax.random.key(0), p=0.0), x)


def test_mixstyle_output_has_convex_statistics():
    x = _maps(5)
    out = np.asarray(mixstyle(jnp.asarray(x), jax.random.key(1), p=1.0, alpha=0.5), np.float64)
    mu, _ = ref_stats(x.astype(np.float64))
    out_mu, _ = ref_stats(out, eps=0.0)
    # Each output mean lies between the example's own mean and some other example's mean.
    lo, hi = np.minimum(mu[:, None], mu[None]), np.maximum(mu[:, None], mu[None])
    inside = (out_mu[:, None] >= lo - 1e-5) & (out_mu[:, None] <= hi + 1e-5)
    assert np.all(np.all(inside, axis=2).any(axis=1))
    assert not np.allclose(out, x, atol=1e-4)


def test_partners():
    keys = jax.random.split(jax.random.key(0), 10)
    for mode in ("random", "crossdomain"):
        draw = jax.jit(jax.vmap(functools.partial(mixstyle_partners, batch=8, mode=mode)))
        for p in np.asarray(draw(keys)):
            if mode == "random":
                assert sorted(p) == list(range(8))
            else:  # the official layout: each half paired with a permutation of the other
                assert sorted(p[:4]) == [4, 5, 6, 7] and sorted(p[4:]) == [0, 1, 2, 3]
    dom = jnp.asarray([0, 1, 2, 0, 1, 2, 2, 0, 1])
    draw = functools.partial(mixstyle_partners, batch=9, mode="crossdomain", domain_ids=dom)
    partners = np.asarray(jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(1), 300)))
    assert np.all(np.asarray(dom)[partners] != np.asarray(dom)[None])
    counts = np.zeros((9, 9))
    for p in partners:
        counts[np.arange(9), p] += 1
    # Uniform over the 6 examples of the other domains: 50 expected each, sd ~6.5.
    other = np.asarray(dom)[:, None] != np.asarray(dom)[None]
    assert counts[other].min() > 20 and counts[other].max() < 85
    alone = mixstyle_partners(
        jax.random.key(0), 3, mode="crossdomain", domain_ids=jnp.zeros(3, int)
    )
    assert np.asarray(alone).tolist() == [0, 1, 2]


def test_errors():
    x = jnp.zeros((3, 2, 2, 1))
    with pytest.raises(ValueError, match="even batch"):
        mixstyle(x, jax.random.key(0), mode="crossdomain")
    with pytest.raises(ValueError, match="mode must be one of"):
        mixstyle(x, jax.random.key(0), mode="bogus")
    with pytest.raises(ValueError, match="at least 2 spatial positions"):
        mixstyle(jnp.zeros((3, 1, 1, 4)), jax.random.key(0))
    with pytest.raises(ValueError, match=r"domain_ids must have shape \(3,\)"):
        mixstyle(x, jax.random.key(0), mode="crossdomain", domain_ids=jnp.zeros(4, int))
    with pytest.raises(ValueError, match="Unknown LeNet mixstyle_layers"):
        lenet((28, 28, 1), rngs=nnx.Rngs(0), mixstyle_layers=("fc",))
    with pytest.raises(ValueError, match="Unknown ResNet mixstyle_layers"):
        resnet18((8, 8, 3), rngs=nnx.Rngs(0), mixstyle_layers=("layer5",))


def test_layer_train_and_eval_modes():
    layer = MixStyle(p=1.0, alpha=0.3, rngs=nnx.Rngs(0))
    x = jnp.asarray(_maps(6))
    a, b = layer(x), layer(x)
    assert not np.allclose(a, x, atol=1e-4) and not np.allclose(a, b, atol=1e-4)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, deterministic=True), x)


def _forward(model):
    """As the trainer: split once, merge inside a jitted function on pure dicts, return the
    features and the new non-parameter state (where the rng streams advance)."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def run(params, rest, x):
        net = nnx.merge(graph, params, rest)
        out = net(x)["features"]
        return out, nnx.to_pure_dict(nnx.split(net, nnx.Param, ...)[2])

    return run, graph, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


@pytest.mark.slow
@pytest.mark.usefixtures("highest_precision")
@pytest.mark.parametrize(
    "build, kwargs, shape",
    [
        (lenet, {"mixstyle_layers": ("conv1", "conv2"), "mixstyle_p": 1.0}, (4, 20, 20, 1)),
        (
            resnet18,
            {"mixstyle_layers": ("layer1", "layer2"), "mixstyle_p": 1.0, "small_input": True},
            (4, 8, 8, 3),
        ),
    ],
    ids=["lenet", "resnet18"],
)
def test_backbone_option(build, kwargs, shape):
    x = jnp.asarray(np.random.default_rng(7).normal(size=shape), jnp.float32)
    plain = build(
        shape[1:], rngs=nnx.Rngs(0), **{k: v for k, v in kwargs.items() if k == "small_input"}
    )
    mixed = build(shape[1:], rngs=nnx.Rngs(0), **kwargs)
    # Same parameter tree and values: MixStyle adds only its rng state.
    p0, p1 = nnx.state(plain, nnx.Param), nnx.state(mixed, nnx.Param)
    assert jax.tree.structure(p0) == jax.tree.structure(p1)
    jax.tree.map(np.testing.assert_array_equal, p0, p1)
    # Train mode (BatchNorm on batch statistics in both): MixStyle changes the features, and
    # the rng state it carries advances from one step to the next.
    run_mixed, graph, params, rest = _forward(mixed)
    run_plain, _, _, rest_plain = _forward(plain)
    out1, rest1 = run_mixed(params, rest, x)
    out2, _ = run_mixed(params, rest1, x)
    ref, _ = run_plain(params, rest_plain, x)
    assert not np.allclose(out1, ref, atol=1e-4)
    assert not np.allclose(out1, out2, atol=1e-4)

    # Gradients reach every parameter through the re-styled maps.
    def loss(params, rest):
        net = nnx.merge(graph, params, rest)
        return jnp.sum(net(x)["features"] ** 2)

    grads = jax.jit(jax.grad(loss))(params, rest)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads) if np.size(g) > 1)
    # Eval mode: exactly the backbone without MixStyle.
    mixed.eval()
    plain.eval()
    run_mixed, _, params, rest = _forward(mixed)
    run_plain, _, _, rest_plain = _forward(plain)
    np.testing.assert_allclose(
        run_mixed(params, rest, x)[0], run_plain(params, rest_plain, x)[0], rtol=1e-6, atol=1e-6
    )


@pytest.mark.usefixtures("highest_precision")
def test_in_the_train_step():
    """Through the trainer (LeNet, no BatchNorm or dropout, so train and eval mode differ only
    by MixStyle): same parameters as without MixStyle for the same seed, a training loss
    that is not the eval-mode loss, gradients into every parameter, the layers' rng
    counters advancing once per step in the state, and an eval step equal to the plain
    network's."""
    kwargs = {"shape": (20, 20, 3), "channels": (4, 8)}
    state, step, evaluate, _ = tiny_setup(
        "source_only", mixstyle_layers=("conv1", "conv2"), mixstyle_p=1.0, **kwargs
    )
    plain, _, evaluate_plain, _ = tiny_setup("source_only", **kwargs)
    jax.tree.map(np.testing.assert_array_equal, state.params, plain.params)
    batch = random_batch(shape=(20, 20, 3))
    images, labels = batch["source"]["image"], batch["source"]["label"]
    evaluate, evaluate_plain = jax.jit(evaluate), jax.jit(evaluate_plain)
    step = jax.jit(step)
    new, metrics = step(state, batch)
    logits, _ = evaluate(state.params, state.rest, images)
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    eval_loss = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels])
    assert np.isfinite(metrics["task_loss"])
    assert abs(float(metrics["task_loss"]) - eval_loss) > 1e-4
    for before, after in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        assert np.any(np.asarray(before) != np.asarray(after))
    new, _ = step(new, batch)
    counts = [v for k, v in jax.tree_util.tree_leaves_with_path(new.rest) if "count" in str(k)]
    assert len(counts) == 2 and all(int(c) == 2 for c in counts), counts
    out = evaluate(new.params, new.rest, images)
    ref = evaluate_plain(new.params, plain.rest, images)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6), out, ref)

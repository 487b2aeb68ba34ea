"""IWAN: importance weights from a detached discriminator, a weighted adversarial loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup, subtree
from tljax import methods
from tljax.methods import iwan


def _bce(logit, label):
    p = 1 / (1 + np.exp(-logit))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _reference(dws, dwt, ds, dt):
    w = 1 - 1 / (1 + np.exp(-dws))
    w = w / w.mean()
    weight_loss = 0.5 * (_bce(dws, 1).mean() + _bce(dwt, 0).mean())
    adv = 0.5 * ((w * _bce(ds, 1)).mean() + _bce(dt, 0).mean())
    return weight_loss, adv, w


def test_importance_weights_and_losses_match_numpy():
    rng = np.random.default_rng(0)
    dws, dwt, ds, dt = (rng.normal(size=n) * 2 for n in (6, 5, 6, 5))
    weight_loss, adv, w = iwan.iwan_losses(*map(jnp.asarray, (dws, dwt, ds, dt)))
    ref = _reference(dws, dwt, ds, dt)
    np.testing.assert_allclose(weight_loss, ref[0], rtol=1e-5)
    np.testing.assert_allclose(adv, ref[1], rtol=1e-5)
    np.testing.assert_allclose(w, ref[2], rtol=1e-5)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-6)
    # the example the discriminator calls most surely "source" gets the smallest weight
    assert int(np.argmin(w)) == int(np.argmax(dws))
    # a confident discriminator: weights stay finite (1 − σ(d) computed as σ(−d))
    big = iwan.importance_weights(jnp.array([40.0, -40.0, 0.0]))
    assert np.all(np.isfinite(np.asarray(big))) and float(big[1]) > float(big[2]) > float(big[0])
    # no gradient flows through the weights
    g = jax.grad(lambda d: iwan.importance_weights(d).sum())(jnp.asarray(dws))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_step_objective_matches_an_independent_computation():
    s = setup("iwan", hparams=dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0, entropy_weight=0.3))
    batch = random_batch(seed=3)
    params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
    _, metrics = jax.jit(s.step)(s.state, batch)
    net = nnx.merge(s.graphs.train_graph, params, rest)  # training mode, as the step
    x = np.concatenate([batch["source"]["image"], batch["target"]["image"]])
    logits, out = net.model(jnp.asarray(x))
    f = out["features"]
    dw = np.asarray(net.method.weight_discriminator(f), np.float64).reshape(-1)
    d = np.asarray(net.method.discriminator(f), np.float64).reshape(-1)
    z = np.asarray(logits, np.float64)
    ys = batch["source"]["label"]
    ce = -_log_softmax(z[:8])[np.arange(8), ys].mean()
    logp_t = _log_softmax(z[8:])
    ent = -(np.exp(logp_t) * logp_t).sum(-1).mean()
    weight_loss, adv, w = _reference(dw[:8], dw[8:], d[:8], d[8:])
    np.testing.assert_allclose(metrics["task_loss"], ce + 0.3 * ent, rtol=1e-4)
    np.testing.assert_allclose(metrics["method_loss"], 1.5 * weight_loss + adv, rtol=1e-4)
    np.testing.assert_allclose(metrics["iwan/target_entropy"], ent, rtol=1e-4)
    np.testing.assert_allclose(metrics["iwan/min_source_weight"], w.min(), rtol=1e-4)


def test_only_the_weighted_adversarial_and_entropy_terms_move_the_features():
    """With the GRL coefficient at 0 and no entropy term, one IWAN step moves the backbone
    exactly as source only's (same seed, data, model; no BatchNorm): the weight
    discriminator sees detached features. With the GRL on, it moves differently."""
    common = dict(bottleneck_dim=None, weight_decay=0.0)
    off = dict(hidden=(16,), grl_lo=0.0, grl_hi=0.0, entropy_weight=0.0)
    batch = random_batch(seed=1)

    def backbone_after(name, hparams):
        s = setup(name, hparams=hparams, **common)
        state, _ = jax.jit(s.step)(s.state, batch)
        return subtree(state.params, "model/backbone/"), s

    ref, _ = backbone_after("source_only", {})
    quiet, s = backbone_after("iwan", off)
    for k in ref:
        np.testing.assert_allclose(quiet[k], ref[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # ... while both discriminators did train in that step
    state, _ = jax.jit(s.step)(s.state, batch)
    for part in ("weight_discriminator", "discriminator"):
        before = subtree(s.state.params, f"method/{part}/")
        after = subtree(state.params, f"method/{part}/")
        assert any(not np.array_equal(before[k], after[k]) for k in before), part
    on, _ = backbone_after("iwan", dict(off, grl_lo=1.0, grl_hi=1.0))
    assert max(float(np.abs(on[k] - ref[k]).max()) for k in ref) > 1e-6


def test_bad_entropy_weight_is_refused():
    for bad in (-0.1, float("inf"), "high"):
        with pytest.raises(ValueError, match="entropy_weight must be a finite weight >= 0"):
            methods.get("iwan", entropy_weight=bad)

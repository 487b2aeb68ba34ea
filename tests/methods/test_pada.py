"""PADA: class weights from target predictions, weighted source and adversarial losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup
from tljax import methods
from tljax.methods import pada


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _bce(logit, label):
    p = 1 / (1 + np.exp(-logit))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def _reference(ls, ys, ds, dt, avg):
    gamma = avg / avg.max()
    w = gamma[ys]
    ce = -np.log(_softmax(ls)[np.arange(len(ys)), ys])
    adv = 0.5 * ((w * _bce(ds, 1)).mean() + _bce(dt, 0).mean())
    return (w * ce).mean(), adv


def test_pada_losses_match_numpy():
    rng = np.random.default_rng(0)
    ls, ys = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    ds, dt, avg = rng.normal(size=6), rng.normal(size=5), rng.random(4)
    task, adv, gamma = pada.pada_losses(jnp.array(ls), jnp.array(ys), ds, dt, jnp.array(avg))
    ref_task, ref_adv = _reference(ls, ys, ds, dt, avg)
    np.testing.assert_allclose(task, ref_task, rtol=1e-5)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5)
    np.testing.assert_allclose(gamma, avg / avg.max(), rtol=1e-6)
    # Uniform class weights: plain cross-entropy and the DANN loss.
    task1, adv1, _ = pada.pada_losses(jnp.array(ls), jnp.array(ys), ds, dt, jnp.ones(4))
    ref_task, ref_adv = _reference(ls, ys, ds, dt, np.ones(4))
    np.testing.assert_allclose([task1, adv1], [ref_task, ref_adv], rtol=1e-5)


def test_step_objective_matches_an_independent_computation():
    momentum = 0.5
    s = setup("pada", hparams=dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0, momentum=momentum))
    batch = random_batch(seed=3)
    params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
    state, metrics = jax.jit(s.step)(s.state, batch)
    # Forward the same parameters in training mode, as the step does.
    net = nnx.merge(s.graphs.train_graph, params, rest)
    x = np.concatenate([batch["source"]["image"], batch["target"]["image"]])
    logits, out = net.model(jnp.asarray(x))
    d = np.asarray(net.method.discriminator(out["features"]), np.float64).reshape(-1)
    logits = np.asarray(logits, np.float64)
    avg0 = np.asarray(rest["method"]["class_avg"], np.float64)
    avg = momentum * avg0 + (1 - momentum) * _softmax(logits[8:]).mean(0)
    ys = batch["source"]["label"]
    ref_task, ref_adv = _reference(logits[:8], ys, d[:8], d[8:], avg)
    np.testing.assert_allclose(metrics["task_loss"], ref_task, rtol=1e-4)
    np.testing.assert_allclose(metrics["method_loss"], ref_adv, rtol=1e-4)
    np.testing.assert_allclose(state.rest["method"]["class_avg"], avg, rtol=1e-5)


def test_class_average_is_kept_across_steps_and_bad_momentum():
    s = setup("pada", hparams=dict(hidden=(16,), momentum=0.0))
    step = jax.jit(s.step)
    state = s.state
    for i in range(2):
        state, metrics = step(state, random_batch(seed=i))
        assert np.isfinite(float(metrics["loss"]))
    avg = np.asarray(state.rest["method"]["class_avg"])
    assert avg.shape == (4,) and np.isclose(avg.sum(), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="momentum"):
        methods.get("pada", momentum=1.0)

"""ETN: the leaky softmax, the auxiliary losses and transferability weights, the step's
objective, and where each gradient goes, against NumPy in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup, subtree
from tljax import methods
from tljax.methods import etn

HP = dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0)


def _leaky(z):
    """The reference form: e^{z_c} / (Σ_k e^{z_k} + K), and its sum."""
    e = np.exp(z)
    p = e / (e.sum(1, keepdims=True) + z.shape[1])
    return p, p.sum(1)


def _bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _auxiliary(aux_s, aux_t, y):
    p_s, d_s = _leaky(aux_s)
    _, d_t = _leaky(aux_t)
    onehot = np.eye(aux_s.shape[1])[y]
    ce = _bce(p_s, onehot).sum() / len(y)
    domain = _bce(d_s, 1).mean() + _bce(d_t, 0).mean()
    w = (1 - d_s) / (1 - d_s).mean()
    return ce, domain, w


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_leaky_softmax_and_auxiliary_losses_match_numpy():
    aux_losses = jax.jit(etn.auxiliary_losses)  # one compile, not one per operation
    rng = np.random.default_rng(0)
    z = rng.normal(size=(9, 5)) * 2
    log_p, log_q, log_d, log_not_d = etn.leaky_log_softmax(jnp.asarray(z, jnp.float32))
    p, d = _leaky(z)
    np.testing.assert_allclose(np.exp(log_p), p, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_q), 1 - p, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_d), d, rtol=1e-5)
    np.testing.assert_allclose(np.exp(log_not_d), 1 - d, rtol=1e-5)
    # All logits 0: every class gets 1/(K + K) and the domain probability is 1/2.
    p0, d0 = _leaky(np.zeros((1, 4)))
    assert p0[0, 0] == pytest.approx(1 / 8) and d0[0] == pytest.approx(0.5)
    y = rng.integers(0, 5, 6)
    ce, domain, w = aux_losses(
        jnp.asarray(z[:6], jnp.float32), jnp.asarray(z[6:], jnp.float32), jnp.asarray(y)
    )
    want = _auxiliary(z[:6], z[6:], y)
    np.testing.assert_allclose(ce, want[0], rtol=1e-5)
    np.testing.assert_allclose(domain, want[1], rtol=1e-5)
    np.testing.assert_allclose(w, want[2], rtol=1e-5)
    assert float(jnp.mean(w)) == pytest.approx(1.0, abs=1e-6)
    # A confident G̃ (p̃_c rounds to 1 in float32) keeps finite losses *and gradients*
    # (PyTorch's BCE clamps log at −100; log1p(−p) would give an infinite gradient).
    big = jnp.asarray([[80.0, -80.0], [-80.0, 80.0]])
    outs = aux_losses(big, -big, jnp.asarray([1, 0]))
    assert all(np.all(np.isfinite(np.asarray(o))) for o in outs)
    grads = jax.grad(lambda a: sum(etn.auxiliary_losses(a, -a, jnp.asarray([1, 0]))[:2]))(big)
    assert np.all(np.isfinite(np.asarray(grads)))
    # Every 1 − d̃ underflows (source logits far above log K): the weights keep mean 1 and
    # their order instead of all becoming 0 (the classifier's loss would vanish).
    huge = jnp.asarray([[200.0, 0.0], [150.0, 0.0], [120.0, 0.0]])
    _, _, w = aux_losses(huge, huge, jnp.asarray([0, 0, 0]))
    assert float(jnp.mean(w)) == pytest.approx(1.0, abs=1e-6)
    assert float(w[2]) > float(w[1]) > float(w[0]) >= 0.0


def test_source_examples_the_auxiliary_calls_target_get_more_weight():
    z = np.array([[4.0, 0.0, 0.0], [-4.0, -4.0, -4.0]])  # source-like, target-like
    _, _, w = etn.auxiliary_losses(jnp.asarray(z), jnp.asarray(z), jnp.asarray([0, 0]))
    assert float(w[1]) > float(w[0])


def test_step_objective_matches_an_independent_computation():
    s = setup("etn", hparams=HP, num_classes=4)
    batch = random_batch(seed=3, num_classes=4)
    params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
    _, metrics = jax.jit(s.step)(s.state, batch)
    net = nnx.merge(s.graphs.train_graph, params, rest)  # training mode, as the step
    x = np.concatenate([batch["source"]["image"], batch["target"]["image"]])
    logits, out = net.model(jnp.asarray(x))
    logits = np.asarray(logits, np.float64)
    aux = np.asarray(net.method.auxiliary(out["features"]), np.float64)
    d = np.asarray(net.method.discriminator(out["features"]), np.float64)
    y, ns = batch["source"]["label"], 8
    aux_ce, aux_domain, w = _auxiliary(aux[:ns], aux[ns:], y)
    ce = (w * -np.log(_softmax(logits[:ns])[np.arange(ns), y])).mean()
    p_t = _softmax(logits[ns:])
    ent = (-(p_t * np.log(p_t)).sum(1)).mean()
    adv = (w * _bce(_sigmoid(d[:ns]), 1)).mean() + _bce(_sigmoid(d[ns:]), 0).mean()
    np.testing.assert_allclose(metrics["etn/cross_entropy"], ce, rtol=1e-4)
    np.testing.assert_allclose(metrics["etn/target_entropy"], ent, rtol=1e-4)
    np.testing.assert_allclose(metrics["etn/adversarial_loss"], adv, rtol=1e-4)
    np.testing.assert_allclose(metrics["etn/aux_class_loss"], aux_ce, rtol=1e-4)
    np.testing.assert_allclose(metrics["etn/aux_domain_loss"], aux_domain, rtol=1e-4)
    np.testing.assert_allclose(metrics["task_loss"], ce + 0.2 * ent, rtol=1e-4)
    np.testing.assert_allclose(metrics["method_loss"], adv + aux_domain + aux_ce, rtol=1e-4)


def test_backbone_gets_the_reversed_weighted_adversarial_gradient_only():
    """One step with λ minus one with λ = 0 from the same state: the backbone's update
    differs by exactly the reversed gradient of the weighted adversarial loss (GRL
    coefficient 1, weights constant); G̃ reads detached features, so its losses add
    nothing to the model; the head gets nothing."""
    lam, lr, momentum = 2.0, 0.05, 0.9
    batch = random_batch(seed=4, num_classes=4)
    updates = {}
    for wgt in (lam, 0.0):
        s = setup("etn", hparams=HP, num_classes=4, weight=wgt, lr=lr)
        params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
        state, _ = jax.jit(s.step)(s.state, batch)
        updates[wgt] = (subtree(state.params, "model/"), subtree(state.params, "method/"))
    x = jnp.asarray(np.concatenate([batch["source"]["image"], batch["target"]["image"]]))

    def forward(model_params):
        net = nnx.merge(s.graphs.train_graph, {**params, "model": model_params}, rest)
        _, out = net.model(x)
        return out["features"], net

    feats, net = forward(params["model"])
    aux = np.asarray(net.method.auxiliary(feats), np.float64)
    _, _, w = _auxiliary(aux[:8], aux[8:], batch["source"]["label"])

    def adversarial(model_params):
        f, n = forward(model_params)
        dd = n.method.discriminator(f)
        return jnp.mean(jnp.asarray(w) * jnp.logaddexp(0.0, -dd[:8])) + jnp.mean(
            jnp.logaddexp(0.0, dd[8:])
        )

    grad = subtree(jax.grad(adversarial)(params["model"]), "")
    scale = lr * (1 + momentum) * lam
    for k, g in grad.items():
        diff = updates[0.0][0]["model/" + k] - updates[lam][0]["model/" + k]
        want = -g if k.startswith(("backbone/", "bottleneck/")) else 0 * g
        np.testing.assert_allclose(diff / scale, want, atol=2e-4, err_msg=k)
    backbone = [k for k in grad if k.startswith("backbone/")]
    assert max(float(np.abs(grad[k]).max()) for k in backbone) > 1e-3
    # G̃ trains through the method loss: its update differs between λ and 0 (both runs
    # share the weight decay).
    aux_keys = [k for k in updates[lam][1] if k.startswith("method/auxiliary/")]
    assert any(not np.allclose(updates[lam][1][k], updates[0.0][1][k]) for k in aux_keys)


def test_registered_and_bad_hparams():
    assert "etn" in methods.names()
    for name in ("entropy_weight", "aux_domain_weight", "aux_class_weight"):
        with pytest.raises(ValueError, match=name):
            methods.get("etn", **{name: -1.0})
    with pytest.raises(ValueError, match="entropy_weight"):
        methods.get("etn", entropy_weight="high")

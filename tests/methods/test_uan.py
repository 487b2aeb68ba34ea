"""UAN: transferability weights, the weighted adversarial and auxiliary losses, the
gradient reversal into the features, and the test-time unknown rule, against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup, subtree
from tljax import methods
from tljax.methods import uan

HP = dict(hidden=(16,), grl_lo=1.0, grl_hi=1.0)


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _bce(logit, label):
    p = _sigmoid(logit)
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def _entropy_norm(logits, t):
    p = _softmax(logits / t)
    return -(p * np.log(p)).sum(-1) / np.log(logits.shape[-1])


def _normalize(w):
    w = (w - w.min()) / (w.max() - w.min())
    return w / w.mean()


def _reference(logits, ys, d, aux, ns, ts=10.0, tt=1.0):
    """(cross-entropy, adversarial, auxiliary, w_s, w_t) as in the official UAN code."""
    k = logits.shape[1] - 1
    ce = -np.log(_softmax(logits[:ns])[np.arange(ns), ys]).mean()
    w_s = _normalize(_entropy_norm(logits[:ns, :k], ts) - _sigmoid(aux[:ns]))
    w_t = _normalize(_sigmoid(aux[ns:]) - _entropy_norm(logits[ns:, :k], tt))
    adv = (w_s * _bce(d[:ns], 1)).mean() + (w_t * _bce(d[ns:], 0)).mean()
    aux_loss = _bce(aux[:ns], 1).mean() + _bce(aux[ns:], 0).mean()
    return ce, adv, aux_loss, w_s, w_t


def test_weights_and_losses_match_numpy():
    rng = np.random.default_rng(0)
    z, aux, d = rng.normal(size=(12, 5)) * 3, rng.normal(size=12), rng.normal(size=12)
    np.testing.assert_allclose(
        uan.normalized_entropy(jnp.array(z), 10.0), _entropy_norm(z, 10.0), rtol=1e-5
    )
    w_s = uan.transferability(jnp.array(aux), jnp.array(z), domain="source", temperature=10.0)
    w_t = uan.transferability(jnp.array(aux), jnp.array(z), domain="target", temperature=1.0)
    np.testing.assert_allclose(w_s, _entropy_norm(z, 10.0) - _sigmoid(aux), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_t, _sigmoid(aux) - _entropy_norm(z, 1.0), rtol=1e-5, atol=1e-6)
    ns, ws, wt = 7, rng.random(7), rng.random(5)
    nws, nwt = uan.normalize_weight(jnp.array(ws)), uan.normalize_weight(jnp.array(wt))
    np.testing.assert_allclose(nws, _normalize(ws), rtol=1e-5)
    assert float(nws.mean()) == pytest.approx(1.0, abs=1e-6) and float(nwt.min()) == 0.0
    np.testing.assert_array_equal(uan.normalize_weight(jnp.full(4, 0.3)), np.ones(4))
    adv, aux_loss = uan.uan_losses(d[:ns], d[ns:], aux[:ns], aux[ns:], nws, nwt)
    want_adv = (_normalize(ws) * _bce(d[:ns], 1)).mean() + (_normalize(wt) * _bce(d[ns:], 0)).mean()
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5)
    np.testing.assert_allclose(aux_loss, _bce(aux[:ns], 1).mean() + _bce(aux[ns:], 0).mean())


def test_predict_thresholds_raw_target_weight():
    rng = np.random.default_rng(1)
    logits, aux = rng.normal(size=(50, 4)) * 2, rng.normal(size=50) * 2
    w_t = _sigmoid(aux) - _entropy_norm(logits[:, :3], 1.0)
    for w0 in (-0.5, 0.0, 0.3):
        want = np.where(w_t < w0, 3, logits[:, :3].argmax(-1))
        got = uan.predict_labels(jnp.array(aux), jnp.array(logits), w0)
        np.testing.assert_array_equal(got, want)
    # A confident prediction on a sample D' calls source: shared-class, kept known.
    confident = np.array([[10.0, 0.0, 0.0, 0.0]])
    assert int(uan.predict_labels(jnp.array([5.0]), jnp.array(confident), -0.5)[0]) == 0
    # An uncertain prediction on a sample D' calls target: unknown.
    flat = np.zeros((1, 4))
    assert int(uan.predict_labels(jnp.array([-5.0]), jnp.array(flat), -0.5)[0]) == 3


def test_step_objective_matches_an_independent_computation():
    s = setup("uan", hparams=HP, num_classes=4)
    batch = random_batch(seed=3, num_classes=3)  # source labels never the unknown (3)
    params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
    _, metrics = jax.jit(s.step)(s.state, batch)
    net = nnx.merge(s.graphs.train_graph, params, rest)  # training mode, as the step
    x = np.concatenate([batch["source"]["image"], batch["target"]["image"]])
    logits, out = net.model(jnp.asarray(x))
    d = np.asarray(net.method.discriminator(out["features"]), np.float64)
    aux = np.asarray(net.method.auxiliary(out["features"]), np.float64)
    ce, adv, aux_loss, _, w_t = _reference(
        np.asarray(logits, np.float64), batch["source"]["label"], d, aux, 8
    )
    np.testing.assert_allclose(metrics["task_loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(metrics["uan/adversarial_loss"], adv, rtol=1e-4)
    np.testing.assert_allclose(metrics["uan/auxiliary_loss"], aux_loss, rtol=1e-4)
    np.testing.assert_allclose(metrics["method_loss"], adv + aux_loss, rtol=1e-4)
    raw = _sigmoid(aux[8:]) - _entropy_norm(np.asarray(logits, np.float64)[8:, :3], 1.0)
    np.testing.assert_allclose(metrics["uan/target_w"], raw.mean(), rtol=1e-4, atol=1e-6)


def test_adversarial_gradient_reaches_the_features_reversed():
    """One step with weight λ minus one with weight 0, from the same state: the model's
    update differs by the method's gradient only. The backbone must get exactly the
    reversed gradient of the weighted adversarial loss (GRL coefficient 1), and nothing
    from D' (detached features) or from the weights (no gradient through w_s, w_t); the
    head gets nothing (it enters only through the detached entropies)."""
    lam, lr, momentum = 2.0, 0.05, 0.9
    batch = random_batch(seed=4, num_classes=3)
    updates = {}
    for w in (lam, 0.0):
        s = setup("uan", hparams=HP, num_classes=4, weight=w, lr=lr)
        params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
        state, _ = jax.jit(s.step)(s.state, batch)
        updates[w] = subtree(state.params, "model/")
    ys = batch["source"]["label"]
    x = jnp.asarray(np.concatenate([batch["source"]["image"], batch["target"]["image"]]))

    def forward(model_params):
        net = nnx.merge(s.graphs.train_graph, {**params, "model": model_params}, rest)
        logits, out = net.model(x)
        return logits, out["features"], net

    logits, feats, net = forward(params["model"])
    aux = np.asarray(net.method.auxiliary(feats), np.float64)
    d = np.asarray(net.method.discriminator(feats), np.float64)
    _, _, _, w_s, w_t = _reference(np.asarray(logits, np.float64), ys, d, aux, 8)

    def adversarial(model_params):  # no GRL, weights as constants
        _, f, n = forward(model_params)
        dd = n.method.discriminator(f)
        bce_s = jnp.logaddexp(0.0, -dd[:8])
        bce_t = jnp.logaddexp(0.0, dd[8:])
        return jnp.mean(jnp.asarray(w_s) * bce_s) + jnp.mean(jnp.asarray(w_t) * bce_t)

    grad = subtree(jax.grad(adversarial)(params["model"]), "")
    # Nesterov SGD's first step: update = −lr (1 + momentum) g.
    scale = lr * (1 + momentum) * lam
    for k, g in grad.items():
        key = "model/" + k
        diff = updates[0.0][key] - updates[lam][key]  # = scale · (method's gradient)
        want = -g if k.startswith("backbone/") or k.startswith("bottleneck/") else 0 * g
        np.testing.assert_allclose(diff / scale, want, atol=2e-4, err_msg=key)
    backbone = [k for k in grad if k.startswith("backbone/")]
    assert max(float(np.abs(grad[k]).max()) for k in backbone) > 1e-3


def test_registered_and_bad_hparams():
    assert "uan" in methods.names()
    with pytest.raises(ValueError, match="w0"):
        methods.get("uan", w0=2.0)
    with pytest.raises(ValueError, match="temperatures"):
        methods.get("uan", source_temperature=0.0)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        setup("uan", hparams=HP, num_classes=1)
    # One source class (+ unknown): the entropy term is 0, w_t = d'.
    z = jnp.zeros((3, 1))
    np.testing.assert_array_equal(uan.normalized_entropy(z), np.zeros(3))

"""OVANet: the one-vs-all loss, the open-set entropy, the step's objective and the
test-time unknown rule, against NumPy in float64; its gradient reaches the features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup, subtree
from tljax import methods
from tljax.methods import ovanet


def _pairs(z, k):
    """Official layout: ``view(B, 2, K)``, softmax over the pair axis."""
    z = z.reshape(z.shape[0], 2, k)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _ova(p, y):
    """Loop form of the official ``ova_loss``: −log p_y and the worst −log(1 − p_k), k≠y."""
    pos, neg = [], []
    for i, label in enumerate(y):
        pos.append(-np.log(p[i, 1, label] + 1e-8))
        others = [-np.log(p[i, 0, k] + 1e-8) for k in range(p.shape[2]) if k != label]
        neg.append(max(others) if others else 0.0)
    return np.mean(pos), np.mean(neg)


def _binary_entropy(p):
    q = p[:, 1, :]
    return np.mean(-q * np.log(q + 1e-8) - (1 - q) * np.log(1 - q + 1e-8))


def test_losses_match_a_loop_reference():
    rng = np.random.default_rng(0)
    k = 5
    z = rng.normal(size=(12, 2 * k)) * 3
    y = rng.integers(0, k, 12)
    p = _pairs(z, k)
    got_pos, got_neg = ovanet.ova_loss(jnp.asarray(p, jnp.float32), jnp.asarray(y))
    want_pos, want_neg = _ova(p, y)
    np.testing.assert_allclose(got_pos, want_pos, rtol=1e-5)
    np.testing.assert_allclose(got_neg, want_neg, rtol=1e-5)
    np.testing.assert_allclose(
        ovanet.open_entropy(jnp.asarray(p, jnp.float32)), _binary_entropy(p), rtol=1e-5
    )
    # Entropy: ln 2 at p = 1/2 everywhere, ~0 for certain decisions.
    half = np.full((3, 2, k), 0.5, np.float32)
    np.testing.assert_allclose(ovanet.open_entropy(jnp.asarray(half)), np.log(2), rtol=1e-6)
    sure = np.stack([np.zeros((3, k)), np.ones((3, k))], axis=1).astype(np.float32)
    assert float(ovanet.open_entropy(jnp.asarray(sure))) < 1e-6
    # A label K (unknown): no positive term, the hardest of all K negatives.
    pk, nk = ovanet.ova_loss(jnp.asarray(p, jnp.float32), jnp.full(12, k))
    assert float(pk) == 0.0
    np.testing.assert_allclose(nk, np.mean((-np.log(p[:, 0, :] + 1e-8)).max(1)), rtol=1e-5)
    # One class: no negative term.
    one = jnp.asarray(_pairs(rng.normal(size=(4, 2)), 1), jnp.float32)
    assert float(ovanet.ova_loss(one, jnp.zeros(4, jnp.int32))[1]) == 0.0


def test_ova_gradient_matches_the_analytic_one():
    """d(−log p_y)/dz: with p_y = σ(z1_y − z0_y), the derivative along z1_y is −(1 − p_y)
    and along z0_y is +(1 − p_y); the hardest negative moves only its own pair."""
    k = 3
    z = jnp.asarray([[0.3, -1.0, 2.0, 0.5, 0.1, -0.4]], jnp.float32)
    y = jnp.asarray([1])

    def pos(z):
        return ovanet.ova_loss(jax.nn.softmax(z.reshape(1, 2, k), axis=1), y)[0]

    def neg(z):
        return ovanet.ova_loss(jax.nn.softmax(z.reshape(1, 2, k), axis=1), y)[1]

    zz = np.asarray(z, np.float64).reshape(2, k)
    p1 = 1 / (1 + np.exp(-(zz[1] - zz[0])))
    g = np.asarray(jax.grad(pos)(z)).reshape(2, k)
    want = np.zeros((2, k))
    want[1, 1], want[0, 1] = -(1 - p1[1]), 1 - p1[1]
    np.testing.assert_allclose(g, want, atol=1e-6)
    # The hardest negative: the k ≠ y with the largest −log(1 − p_k), i.e. the largest p_k.
    hardest = max((kk for kk in range(k) if kk != 1), key=lambda kk: p1[kk])
    g = np.asarray(jax.grad(neg)(z)).reshape(2, k)
    want = np.zeros((2, k))
    want[1, hardest], want[0, hardest] = p1[hardest], -p1[hardest]
    np.testing.assert_allclose(g, want, atol=1e-6)


def test_predict_marks_unknown_where_the_chosen_class_says_no():
    rng = np.random.default_rng(1)
    k = 3
    logits = rng.normal(size=(40, k + 1)) * 2
    p = _pairs(rng.normal(size=(40, 2 * k)) * 2, k)
    pred = logits[:, :k].argmax(-1)
    for threshold in (0.3, 0.5, 0.8):
        want = np.where(p[np.arange(40), 0, pred] > threshold, k, pred)
        got = ovanet.predict_labels(jnp.asarray(p, jnp.float32), jnp.asarray(logits), threshold)
        np.testing.assert_array_equal(got, want)
    # The unknown output's own logit never decides: a huge last logit stays known.
    big = np.array([[0.0, 5.0, 0.0, 100.0]])
    yes = np.stack([np.zeros((1, k)), np.ones((1, k))], axis=1)
    assert int(ovanet.predict_labels(jnp.asarray(yes), jnp.asarray(big), 0.5)[0]) == 1


def test_step_objective_matches_an_independent_computation():
    s = setup("ovanet", num_classes=4)
    batch = random_batch(seed=3, num_classes=3)  # source labels never the unknown (3)
    params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
    _, metrics = jax.jit(s.step)(s.state, batch)
    net = nnx.merge(s.graphs.train_graph, params, rest)
    x = np.concatenate([batch["source"]["image"], batch["target"]["image"]])
    logits, out = net.model(jnp.asarray(x))
    logits = np.asarray(logits, np.float64)
    f = np.asarray(out["features"], np.float64)
    kernel = np.asarray(params["method"]["heads"]["kernel"], np.float64)
    p = _pairs(f @ kernel, 3)
    y, ns = batch["source"]["label"], 8
    z = logits[:ns] - logits[:ns].max(1, keepdims=True)
    ce = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(ns), y])
    pos, neg = _ova(p[:ns], y)
    ent = _binary_entropy(p[ns:])
    np.testing.assert_allclose(metrics["task_loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(metrics["ovanet/ova_positive"], pos, rtol=1e-4)
    np.testing.assert_allclose(metrics["ovanet/ova_negative"], neg, rtol=1e-4)
    np.testing.assert_allclose(metrics["ovanet/target_open_entropy"], ent, rtol=1e-4)
    np.testing.assert_allclose(metrics["method_loss"], 0.5 * (pos + neg) + 0.1 * ent, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss"], ce + 0.5 * (pos + neg) + 0.1 * ent, rtol=1e-4)


def test_method_gradient_reaches_the_features_not_the_head():
    """One step with λ minus one with λ = 0: the model's update is the method loss's
    gradient (Nesterov SGD's first step, −lr (1 + μ) g), nonzero in the backbone, zero in
    the closed-set head (the OVA heads read the features, not the logits)."""
    lam, lr, momentum = 2.0, 0.05, 0.9
    batch = random_batch(seed=4, num_classes=3)
    updates = {}
    for w in (lam, 0.0):
        s = setup("ovanet", num_classes=4, weight=w, lr=lr)
        params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
        state, _ = jax.jit(s.step)(s.state, batch)
        updates[w] = subtree(state.params, "model/")
    x = jnp.asarray(np.concatenate([batch["source"]["image"], batch["target"]["image"]]))
    ys = jnp.asarray(batch["source"]["label"])

    def method_loss(model_params):
        net = nnx.merge(s.graphs.train_graph, {**params, "model": model_params}, rest)
        _, out = net.model(x)
        p = net.method(out["features"])
        pos, neg = ovanet.ova_loss(p[:8], ys)
        return 0.5 * (pos + neg) + 0.1 * ovanet.open_entropy(p[8:])

    grad = subtree(jax.grad(method_loss)(params["model"]), "")
    scale = lr * (1 + momentum) * lam
    for k, g in grad.items():
        diff = updates[0.0]["model/" + k] - updates[lam]["model/" + k]
        np.testing.assert_allclose(diff / scale, g, atol=2e-4, err_msg=k)
    assert all(not np.any(grad[k]) for k in grad if k.startswith("head/"))
    backbone = [k for k in grad if k.startswith("backbone/")]
    assert max(float(np.abs(grad[k]).max()) for k in backbone) > 1e-3


def test_open_set_entropy_makes_target_decisions_confident():
    """The target term does what it is for: 40 steps on one batch with γ = 1 end with a
    lower target open-set entropy than the same 40 steps with γ = 0 (only the source OVA
    loss training the one-vs-all heads)."""
    batch = random_batch(seed=5, num_classes=3)
    final = {}
    for gamma in (1.0, 0.0):
        s = setup("ovanet", hparams=dict(entropy_weight=gamma), num_classes=4, lr=0.05)
        step, state = jax.jit(s.step), s.state
        for _ in range(40):
            state, metrics = step(state, batch)
        final[gamma] = float(metrics["ovanet/target_open_entropy"])
    assert final[1.0] < 0.5 * final[0.0], final


def test_registered_and_bad_hparams():
    assert "ovanet" in methods.names()
    with pytest.raises(ValueError, match="threshold"):
        methods.get("ovanet", threshold=1.0)
    with pytest.raises(ValueError, match="entropy_weight"):
        methods.get("ovanet", entropy_weight="high")
    with pytest.raises(ValueError, match="num_classes >= 2"):
        setup("ovanet", num_classes=1)

"""OSBP: the K+1-way boundary loss, its gradient reversal, against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.methods.helpers import copy_tree, random_batch, setup
from tljax import methods
from tljax.methods import osbp


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _boundary(logits, t, eps=1e-6):
    p = _softmax(logits)[:, -1]
    return -np.mean(t * np.log(p + eps) + (1 - t) * np.log(1 - p + eps))


@pytest.mark.parametrize("t", [0.5, 0.3])
def test_boundary_loss_matches_numpy(t):
    z = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_allclose(osbp.boundary_loss(jnp.array(z), t), _boundary(z, t), rtol=1e-5)


def test_boundary_loss_is_smallest_on_the_boundary():
    # p_u = t minimises the BCE towards t.
    def at(p):
        return float(osbp.boundary_loss(jnp.log(jnp.array([[1 - p, p]])), 0.5))

    assert at(0.5) < at(0.3) and at(0.5) < at(0.8)


def test_step_objective_and_gradient_reversal():
    s = setup("osbp", num_classes=4)
    batch = random_batch(seed=2, num_classes=3)  # source labels never the unknown (3)
    params, rest = copy_tree(s.state.params), copy_tree(s.state.rest)
    _, metrics = jax.jit(s.step)(s.state, batch)
    net = nnx.merge(s.graphs.train_graph, params, rest)
    x = np.concatenate([batch["source"]["image"], batch["target"]["image"]])
    logits, _ = net.model(jnp.asarray(x))
    logits = np.asarray(logits, np.float64)
    ys = batch["source"]["label"]
    ce = -np.log(_softmax(logits[:8])[np.arange(8), ys]).mean()
    np.testing.assert_allclose(metrics["task_loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(metrics["method_loss"], _boundary(logits[8:], 0.5), rtol=1e-4)

    # The head descends the boundary loss, the features ascend it (GRL).
    head = net.model.head
    feats = jax.random.normal(jax.random.key(0), (5, head.in_features))
    graphdef, hp = nnx.split(head)

    def adv(p, f):
        h = nnx.merge(graphdef, p)
        return osbp.boundary_loss(h(osbp.gradient_reversal(f, jnp.float32(1.0))))

    def plain(p, f):
        return osbp.boundary_loss(nnx.merge(graphdef, p)(f))

    g_p, g_f = jax.grad(adv, argnums=(0, 1))(hp, feats)
    r_p, r_f = jax.grad(plain, argnums=(0, 1))(hp, feats)
    np.testing.assert_allclose(g_f, -np.asarray(r_f), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(r_p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        methods.get("osbp", threshold=1.0)

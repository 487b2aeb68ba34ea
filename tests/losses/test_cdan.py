"""CDAN conditioning maps and entropy weights against loop-based NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.losses._numeric import arr, assert_finite_nonzero, jitted, softmax_rows, tol
from tljax.losses.cdan import (
    entropy_conditioning_weights,
    multilinear_map,
    randomized_multilinear_map,
)

RNG = np.random.default_rng(0)
B, F, C, D = 4, 5, 3, 7
FEATS = RNG.normal(size=(B, F))
PROBS = softmax_rows(RNG.normal(size=(B, C)) * 2)
RF, RG = RNG.normal(size=(F, D)), RNG.normal(size=(C, D))


def ref_multilinear(f, g):
    out = np.zeros((len(f), g.shape[1] * f.shape[1]))
    for b in range(len(f)):
        for c in range(g.shape[1]):
            for j in range(f.shape[1]):
                out[b, c * f.shape[1] + j] = g[b, c] * f[b, j]
    return out


def ref_randomized(f, g, rf, rg):
    d = rf.shape[1]
    out = np.zeros((len(f), d))
    for b in range(len(f)):
        for k in range(d):
            out[b, k] = (f[b] @ rf[:, k]) * (g[b] @ rg[:, k]) / np.sqrt(d)
    return out


def ref_weights(p):
    h = np.array([-sum(v * np.log(v) for v in row if v > 0) for row in p])
    w = 1 + np.exp(-h)
    return len(p) * w / w.sum()


def test_multilinear_map_shape_order_and_values(dtype):
    out = jitted(multilinear_map)(arr(FEATS, dtype), arr(PROBS, dtype))
    assert out.shape == (B, F * C) and out.dtype == dtype
    np.testing.assert_allclose(out, ref_multilinear(FEATS, PROBS), **tol(dtype))


def test_randomized_map(dtype):
    out = jitted(randomized_multilinear_map)(*(arr(a, dtype) for a in (FEATS, PROBS, RF, RG)))
    assert out.shape == (B, D) and out.dtype == dtype
    np.testing.assert_allclose(out, ref_randomized(FEATS, PROBS, RF, RG), **tol(dtype, 10))


def test_entropy_weights(dtype):
    probs = np.concatenate([PROBS, np.eye(C)[:1]])  # a one-hot row: 0·log 0 = 0
    w = jitted(entropy_conditioning_weights)(arr(probs, dtype))
    assert w.shape == (B + 1,) and w.dtype == dtype
    np.testing.assert_allclose(w, ref_weights(probs), **tol(dtype))
    np.testing.assert_allclose(np.mean(w), 1.0, **tol(dtype))
    assert int(np.argmax(w)) == B  # the most confident sample weighs most


def test_gradients():
    f, p = np.asarray(FEATS, np.float32), np.asarray(PROBS, np.float32)
    # Linear in each argument: d Σ_k out_k / d f = Σ_c g_c = 1 for probability rows.
    g = jax.jit(jax.grad(lambda a: jnp.sum(multilinear_map(a, p))))(f)
    np.testing.assert_allclose(g, np.ones_like(FEATS), rtol=1e-6)
    g = jax.jit(jax.grad(lambda a: jnp.sum(randomized_multilinear_map(a, p, RF, RG) ** 2)))(f)
    assert_finite_nonzero(g)
    # The weights are detached.
    g = jax.jit(jax.grad(lambda q: jnp.sum(entropy_conditioning_weights(q) * jnp.arange(B))))(p)
    assert np.all(g == 0)


def test_errors_are_informative():
    with pytest.raises(ValueError, match=r"same batch, got \(4, 5\) and \(3, 3\)"):
        multilinear_map(np.zeros((4, 5)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"rf \(5, 7\), rg \(2, 7\)"):
        randomized_multilinear_map(np.zeros((4, 5)), np.zeros((4, 3)), RF, RG[:2])

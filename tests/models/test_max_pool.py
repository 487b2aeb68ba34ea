"""LeNet's 2×2 max-pool: forward against ``lax.reduce_window``, gradient against JAX's
own derivative (no ties) and against a NumPy loop giving each window's gradient to its
first maximum (ties, as PyTorch does)."""

import jax
import jax.numpy as jnp
import numpy as np

from tljax.models.lenet import max_pool_2x2


def _reduce_window_pool(x):
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def test_forward_and_gradient_without_ties_match_jax():
    x = jax.random.normal(jax.random.key(0), (3, 7, 9, 4))  # odd sizes: last row/col dropped
    g = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
    np.testing.assert_array_equal(max_pool_2x2(x), _reduce_window_pool(x))
    ours = jax.grad(lambda x: (max_pool_2x2(x) * g).sum())(x)
    ref = jax.grad(lambda x: (_reduce_window_pool(x) * g).sum())(x)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=0)
    assert ours.shape == x.shape and float(jnp.abs(ours[:, 6]).max()) == 0.0  # dropped row


def test_tied_maxima_give_the_whole_gradient_to_the_first():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(2, 6, 4, 3)).astype(np.float32)  # many ties
    g = rng.normal(size=(2, 3, 2, 3)).astype(np.float32)
    expected = np.zeros_like(x)
    for b, i, j, c in np.ndindex(*g.shape):
        window = [(2 * i + di, 2 * j + dj) for di in (0, 1) for dj in (0, 1)]
        vals = [x[b, r, s, c] for r, s in window]
        r, s = window[int(np.argmax(vals))]  # np.argmax: the first maximum
        expected[b, r, s, c] = g[b, i, j, c]
    ours = jax.jit(jax.grad(lambda x: (max_pool_2x2(x) * g).sum()))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(ours), expected)

    # JAX's derivative of a reshape + max splits the gradient among ties instead: the
    # same total, spread differently.
    def split_pool(x):
        return x[:, :6, :4].reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4))

    split = jax.grad(lambda x: (split_pool(x) * g).sum())(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(ours).sum(), np.asarray(split).sum(), rtol=1e-5)
    assert not np.allclose(np.asarray(ours), np.asarray(split))

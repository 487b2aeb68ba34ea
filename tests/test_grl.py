"""Gradient reversal and its warm-start schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tljax.losses.grl import gradient_reversal, warm_start_coefficient


@pytest.mark.parametrize("coeff", [0.0, 0.3, 1.0, 2.5])
def test_grl_is_identity_forward_and_flips_scaled_gradient(coeff):
    x = jax.random.normal(jax.random.key(0), (4, 3))
    w = jax.random.normal(jax.random.key(1), (4, 3))
    np.testing.assert_array_equal(gradient_reversal(x, coeff), x)
    f = lambda x: jnp.sum(w * jnp.sin(x))
    g_plain = jax.grad(f)(x)
    g_rev = jax.grad(lambda x: f(gradient_reversal(x, coeff)))(x)
    np.testing.assert_allclose(g_rev, -coeff * g_plain, rtol=1e-6, atol=1e-7)


def test_grl_under_jit_with_traced_coefficient():
    x = jnp.arange(3.0)
    g = jax.jit(jax.grad(lambda x, c: jnp.sum(gradient_reversal(x, c) ** 2)))(x, 0.5)
    np.testing.assert_allclose(g, -0.5 * 2 * x)


def test_warm_start_schedule_formula():
    lo, hi, alpha, n = 0.1, 2.0, 10.0, 5000.0
    for i in [0, 1, 100, 2500, 5000, 10**6]:
        expected = 2 * (hi - lo) / (1 + np.exp(-alpha * i / n)) - (hi - lo) + lo
        got = warm_start_coefficient(i, lo=lo, hi=hi, alpha=alpha, max_iters=n)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(warm_start_coefficient(0)) == pytest.approx(0.0)
    assert float(warm_start_coefficient(10**7)) == pytest.approx(1.0)


def _old_sigmoid_form(i, lo, hi, alpha, n):
    """The float32 sigmoid form the schedule used before (kept to show what the test catches)."""
    i = jnp.asarray(i, jnp.float32)
    span = hi - lo
    return 2.0 * span / (1.0 + jnp.exp(-alpha * i / n)) - span + lo


@pytest.mark.parametrize("lo,hi,alpha,n", [(0.0, 1.0, 1.0, 1000.0), (0.0, 0.1, 10.0, 5000.0)])
def test_warm_start_coefficient_is_float32_accurate_at_small_steps(lo, hi, alpha, n):
    steps = np.array([1, 2, 3, 5, 10, 50, 100])
    # float64 reference of the paper's formula.
    ref = 2 * (hi - lo) / (1 + np.exp(-alpha * steps / n)) - (hi - lo) + lo
    got = np.array(
        [float(warm_start_coefficient(i, lo=lo, hi=hi, alpha=alpha, max_iters=n)) for i in steps]
    )
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)
    old = np.array([float(_old_sigmoid_form(i, lo, hi, alpha, n)) for i in steps])
    # The sigmoid form loses ~1e-4 relative precision here (why it was replaced).
    assert np.max(np.abs(old - ref) / ref) > 1e-5


def test_warm_start_coefficient_traced_step_is_float32():
    c = jax.jit(lambda s: warm_start_coefficient(s, lo=0.0, hi=1.0))(jnp.int32(3))
    assert c.dtype == jnp.float32
    np.testing.assert_allclose(float(c), np.tanh(3 / 2000), rtol=1e-6)

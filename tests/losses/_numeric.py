"""Helpers for the loss tests: finite differences, tolerances, input conversion."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def fd_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of a scalar NumPy function, in float64."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        grad[idx] = (f(plus) - f(minus)) / (2.0 * eps)
    return grad


def tol(dtype, scale: float = 1.0) -> dict:
    """assert_allclose tolerances for a JAX result in ``dtype`` against a float64 reference."""
    if dtype == np.float32:
        return {"rtol": 1e-4, "atol": 1e-5 * scale}
    return {"rtol": 1e-10, "atol": 1e-12 * scale}


FD_TOL = {"rtol": 1e-5, "atol": 1e-7}


def arr(a: np.ndarray, dtype) -> jnp.ndarray:
    """A JAX array of ``a`` cast to ``dtype`` (float64 needs jax x64 enabled)."""
    out = jnp.asarray(np.asarray(a).astype(dtype))
    assert out.dtype == dtype
    return out


def softmax_rows(z: np.ndarray) -> np.ndarray:
    """Row softmax with an explicit loop (reference code)."""
    out = np.empty_like(z, dtype=np.float64)
    for i, row in enumerate(np.asarray(z, dtype=np.float64)):
        e = np.exp(row - row.max())
        out[i] = e / e.sum()
    return out


def assert_finite_nonzero(g) -> None:
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), "gradient has non-finite entries"
    assert np.any(np.abs(g) > 0), "gradient is identically zero"


def jitted(fn, **kwargs):
    """``jax.jit`` of ``fn`` with keyword arguments bound (one compile instead of eager
    op-by-op dispatch, which is much slower for these small graphs)."""
    return jax.jit(functools.partial(fn, **kwargs))


def jit_grad(fn, argnums=0, **kwargs):
    """Jitted gradient of ``fn`` with keyword arguments bound."""
    return jax.jit(jax.grad(functools.partial(fn, **kwargs), argnums=argnums))

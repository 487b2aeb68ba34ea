"""SAFN / HAFN against loop-based NumPy norms."""

from __future__ import annotations

import numpy as np
import pytest

from tests.losses._numeric import FD_TOL, arr, assert_finite_nonzero, fd_grad, jit_grad, jitted, tol
from tljax.losses.afn import hafn, safn


def norms(f):
    return np.array([np.sqrt(sum(v * v for v in row)) for row in f.reshape(len(f), -1)])


def ref_safn(f, delta_r, radius=None):
    """``radius`` fixed: the detached sg(||f||) + Δr (for finite differences)."""
    n = norms(f)
    r = n + delta_r if radius is None else radius
    return sum((a - b) ** 2 for a, b in zip(n, r, strict=True)) / len(f)


def ref_hafn(f, radius):
    return (norms(f).mean() - radius) ** 2


FEATS = np.abs(np.random.default_rng(0).normal(size=(5, 2, 3)))


def test_values_match_reference(dtype):
    f = arr(FEATS, dtype)
    out = jitted(safn, delta_r=0.5)(f)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_safn(FEATS, 0.5), **tol(dtype))
    np.testing.assert_allclose(out, 0.25, **tol(dtype))  # the value is always Δr²
    np.testing.assert_allclose(jitted(hafn, radius=3.0)(f), ref_hafn(FEATS, 3.0), **tol(dtype))


def test_gradients_match_finite_differences(x64):
    g = jit_grad(safn, delta_r=1.0)(FEATS)
    assert_finite_nonzero(g)
    fixed = norms(FEATS) + 1.0
    np.testing.assert_allclose(g, fd_grad(lambda f: ref_safn(f, 1.0, fixed), FEATS), **FD_TOL)
    g = jit_grad(hafn, radius=3.0)(FEATS)
    np.testing.assert_allclose(g, fd_grad(lambda f: ref_hafn(f, 3.0), FEATS), **FD_TOL)
    assert_finite_nonzero(g)


def test_safn_step_enlarges_every_norm_by_about_delta_r():
    f = np.asarray(FEATS.reshape(5, 6), np.float32)
    delta_r, batch = 1.0, f.shape[0]
    # One plain gradient step with lr = B/2 moves each norm by exactly Δr.
    stepped = f - (batch / 2.0) * jit_grad(safn, delta_r=delta_r)(f)
    before, after = np.linalg.norm(f, axis=1), np.linalg.norm(stepped, axis=1)
    assert np.all(after > before)
    np.testing.assert_allclose(after - before, delta_r, rtol=1e-5)


def test_zero_feature_row_has_finite_zero_gradient():
    f = np.asarray([[0.0, 0.0], [3.0, 4.0]], np.float32)
    for g in (jit_grad(safn)(f), jit_grad(hafn)(f)):
        assert np.all(np.isfinite(g)) and np.all(g[0] == 0.0)


def test_errors_are_informative():
    with pytest.raises(ValueError, match=r"\(batch, \.\.\.\), got \(3,\)"):
        safn(np.zeros(3))

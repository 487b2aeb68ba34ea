"""NT-Xent against a loop-based NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.losses._numeric import FD_TOL, arr, assert_finite_nonzero, fd_grad, jit_grad, jitted, tol
from tljax.losses.contrastive import nt_xent


def ref_nt_xent(z1, z2, temperature):
    views = [v / np.linalg.norm(v) for v in np.concatenate([z1, z2])]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        numer = np.exp(views[i] @ views[positive] / temperature)
        denom = sum(np.exp(views[i] @ views[k] / temperature) for k in range(2 * n) if k != i)
        total += -np.log(numer / denom)
    return total / (2 * n)


RNG = np.random.default_rng(0)
Z1, Z2 = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_matches_reference(dtype, temperature):
    out = jitted(nt_xent, temperature=temperature)(arr(Z1, dtype), arr(Z2, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_nt_xent(Z1, Z2, temperature), **tol(dtype))


def test_gradient(x64):
    g1, g2 = jit_grad(nt_xent, argnums=(0, 1))(Z1, Z2)
    np.testing.assert_allclose(g1, fd_grad(lambda a: ref_nt_xent(a, Z2, 0.5), Z1), **FD_TOL)
    np.testing.assert_allclose(g2, fd_grad(lambda b: ref_nt_xent(Z1, b, 0.5), Z2), **FD_TOL)
    assert_finite_nonzero(g1)
    assert_finite_nonzero(g2)


def test_aligned_pairs_score_lower_than_random():
    z = RNG.normal(size=(16, 8))
    fn = jitted(nt_xent)
    aligned = float(fn(z, z + 0.05 * RNG.normal(size=z.shape)))
    random = float(fn(z, RNG.normal(size=z.shape)))
    assert aligned < random
    # Scale invariance (cosine similarity).
    np.testing.assert_allclose(fn(3.0 * Z1, 0.5 * Z2), fn(Z1, Z2), rtol=1e-5)


def test_errors_are_informative():
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent(np.zeros((2, 3)), np.zeros((2, 3)), temperature=0.0)

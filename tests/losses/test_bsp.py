"""BSP / BSS against eigenvalues of the Gram matrix."""

from __future__ import annotations

import numpy as np
import pytest

from tests.losses._numeric import FD_TOL, arr, assert_finite_nonzero, fd_grad, jit_grad, jitted, tol
from tljax.losses.bsp import bsp, bss


def eigs_desc(f):
    """Nonzero-rank eigenvalues of FᵀF (= squared singular values), largest first."""
    gram = f.T @ f if f.shape[0] >= f.shape[1] else f @ f.T
    return np.sort(np.linalg.eigvalsh(gram))[::-1]


def ref_bsp(fs, ft, k):
    return sum(eigs_desc(fs)[:k]) + sum(eigs_desc(ft)[:k])


def ref_bss(f, k):
    values = eigs_desc(f)
    return sum(values[len(values) - 1 - i] for i in range(k))


RNG = np.random.default_rng(0)
FS, FT, WIDE = RNG.normal(size=(6, 4)), RNG.normal(size=(5, 4)) + 0.5, RNG.normal(size=(3, 5))


@pytest.mark.parametrize("k", [1, 2])
def test_values_match_gram_eigenvalues(dtype, k):
    out = jitted(bsp, k=k)(arr(FS, dtype), arr(FT, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_bsp(FS, FT, k), **tol(dtype, 10))
    np.testing.assert_allclose(jitted(bss, k=k)(arr(FS, dtype)), ref_bss(FS, k), **tol(dtype))
    np.testing.assert_allclose(jitted(bss, k=k)(arr(WIDE, dtype)), ref_bss(WIDE, k), **tol(dtype))


def test_gradients_match_finite_differences(x64):
    gs, gt = jit_grad(bsp, argnums=(0, 1), k=2)(FS, FT)
    np.testing.assert_allclose(gs, fd_grad(lambda a: ref_bsp(a, FT, 2), FS), **FD_TOL)
    np.testing.assert_allclose(gt, fd_grad(lambda b: ref_bsp(FS, b, 2), FT), **FD_TOL)
    g = jit_grad(bss, k=1)(WIDE)
    for grad in (gs, gt, g):
        assert_finite_nonzero(grad)
    np.testing.assert_allclose(g, fd_grad(lambda a: ref_bss(a, 1), WIDE), **FD_TOL)
    # Analytic: d σ1²/dF = 2 F v1 v1ᵀ with v1 the top right singular vector.
    v1 = np.linalg.svd(FS)[2][0]
    np.testing.assert_allclose(
        jit_grad(bss, k=4)(FS) + jit_grad(bsp, k=1)(FS, FT), 2 * FS + 2 * FS @ np.outer(v1, v1),
        rtol=1e-6, atol=1e-9,
    )  # fmt: skip


def test_errors_are_informative():
    with pytest.raises(
        ValueError, match=r"k must be an int in \[1, min\(batch, dim\)\] = \[1, 3\]"
    ):
        bss(np.zeros((3, 5)), k=4)
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        bsp(np.zeros(3), np.zeros((3, 2)))

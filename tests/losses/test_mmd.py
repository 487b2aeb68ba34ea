"""MK-MMD and JMMD against a NumPy transcription of TLlib's index-matrix formulation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.losses._numeric import (
    FD_TOL,
    arr,
    assert_finite_nonzero,
    fd_grad,
    jit_grad,
    jitted,
    softmax_rows,
    tol,
)
from tljax.losses.mmd import gaussian_kernels, jmmd, mk_mmd

N, D = 6, 3


def _data(seed=0, shift=0.7):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, D)), rng.normal(size=(N, D)) + shift


def ref_kernel(z, sigma=None, sigma_sq=None):
    """TLlib's GaussianKernel family: σ² = α · mean(d²), α = 2^k, k = −3..1; sum over α."""
    m = len(z)
    d2 = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            d2[i, j] = np.sum((z[i] - z[j]) ** 2)
    if sigma is not None:
        return np.exp(-d2 / (2 * sigma**2))
    mean_d2 = d2.mean() if sigma_sq is None else sigma_sq
    return sum(np.exp(-d2 / (2 * (2.0**k) * mean_d2)) for k in range(-3, 2))


def ref_index_matrix(n, linear):
    """TLlib's ``_update_index_matrix``."""
    idx = np.zeros((2 * n, 2 * n))
    if linear:
        for i in range(n):
            s1, s2 = i, (i + 1) % n
            t1, t2 = s1 + n, s2 + n
            idx[s1, s2] = idx[t1, t2] = 1.0 / n
            idx[s1, t2] = idx[s2, t1] = -1.0 / n
    else:
        for i in range(n):
            for j in range(n):
                if i != j:
                    idx[i, j] = idx[i + n, j + n] = 1.0 / (n * (n - 1))
                idx[i, j + n] = idx[i + n, j] = -1.0 / (n * n)
    return idx


def ref_biased(kmat, n):
    total = 0.0
    for i in range(n):
        for j in range(n):
            total += kmat[i, j] + kmat[n + i, n + j] - 2 * kmat[i, n + j]
    return total / n**2


def ref_mmd(xs, ys, sigmas=None, mode="unbiased", mean_d2s=None):
    """JMMD (one layer = MK-MMD); ``mean_d2s`` fixes the bandwidths (no gradient through them)."""
    n = len(xs[0])
    kmat = 1.0
    for layer, (x, y) in enumerate(zip(xs, ys, strict=True)):
        z = np.concatenate([x, y])
        sigma = None if sigmas is None else sigmas[layer]
        fixed = None if mean_d2s is None else mean_d2s[layer]
        kmat = kmat * ref_kernel(z, sigma=sigma, sigma_sq=fixed)
    if mode == "biased":
        return ref_biased(kmat, n)
    tllib = np.sum(kmat * ref_index_matrix(n, mode == "linear")) + 2.0 / (n - 1)
    return tllib - 2.0 / (n - 1)  # tljax drops TLlib's constant offset


def _mean_d2(x, y):
    z = np.concatenate([x, y])
    return np.mean([[np.sum((a - b) ** 2) for b in z] for a in z])


MODES = {"unbiased": {}, "biased": {"unbiased": False}, "linear": {"linear": True}}


def test_gaussian_kernels_match_tllib(dtype):
    x, y = _data()
    out = jitted(gaussian_kernels)(arr(x, dtype), arr(y, dtype))
    assert out.shape == (2 * N, 2 * N) and out.dtype == dtype
    np.testing.assert_allclose(out, ref_kernel(np.concatenate([x, y])), **tol(dtype))
    fixed = jitted(gaussian_kernels, sigma=0.92)(arr(x, dtype), arr(y, dtype))
    np.testing.assert_allclose(fixed, ref_kernel(np.concatenate([x, y]), sigma=0.92), **tol(dtype))


@pytest.mark.parametrize("mode", list(MODES))
def test_mk_mmd_matches_reference(dtype, mode):
    x, y = _data()
    out = jitted(mk_mmd, **MODES[mode])(arr(x, dtype), arr(y, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_mmd([x], [y], mode=mode), **tol(dtype, 10))


@pytest.mark.parametrize("mode", list(MODES))
def test_jmmd_matches_reference(dtype, mode):
    x, y = _data(1)
    px, py = softmax_rows(x), softmax_rows(y)
    fn = jitted(jmmd, sigmas=(None, 0.92), **MODES[mode])
    out = fn([arr(x, dtype), arr(px, dtype)], [arr(y, dtype), arr(py, dtype)])
    expected = ref_mmd([x, px], [y, py], sigmas=(None, 0.92), mode=mode)
    np.testing.assert_allclose(out, expected, **tol(dtype, 10))


@pytest.mark.parametrize("mode", list(MODES))
def test_mk_mmd_gradient_has_no_bandwidth_term(x64, mode):
    """JAX's gradient equals the finite-difference gradient with the bandwidth held fixed,
    and differs from the one where the bandwidth moves with the inputs."""
    x, y = _data(3)
    gx, gy = jit_grad(mk_mmd, argnums=(0, 1), **MODES[mode])(x, y)
    fixed = [_mean_d2(x, y)]
    fd_x = fd_grad(lambda a: ref_mmd([a], [y], mode=mode, mean_d2s=fixed), x)
    fd_y = fd_grad(lambda b: ref_mmd([x], [b], mode=mode, mean_d2s=fixed), y)
    np.testing.assert_allclose(gx, fd_x, **FD_TOL)
    np.testing.assert_allclose(gy, fd_y, **FD_TOL)
    assert_finite_nonzero(gx)
    assert_finite_nonzero(gy)
    moving = fd_grad(lambda a: ref_mmd([a], [y], mode=mode), x)
    assert np.max(np.abs(moving - fd_x)) > 1e-4


def test_jmmd_gradient(x64):
    x, y = _data(4)
    py = softmax_rows(y)
    g = jax.jit(jax.grad(lambda a: jmmd([a, jax.nn.softmax(a)], [y, py], sigmas=(None, 0.92))))(x)
    fixed = [_mean_d2(x, y), None]
    fd = fd_grad(
        lambda a: ref_mmd([a, softmax_rows(a)], [y, py], sigmas=(None, 0.92), mean_d2s=fixed), x
    )
    np.testing.assert_allclose(g, fd, **FD_TOL)
    assert_finite_nonzero(g)


def test_identical_batches_give_zero_biased_mmd(dtype):
    x, _ = _data(5)
    biased = jitted(mk_mmd, unbiased=False)
    assert abs(float(biased(arr(x, dtype), arr(x, dtype)))) < 1e-6
    # Degenerate batch (all points equal): the bandwidth guard keeps it finite.
    same = np.ones_like(arr(x, dtype))
    assert abs(float(biased(same, same))) < 1e-6


@pytest.mark.parametrize("mode", ["unbiased", "biased"])
def test_mmd_grows_monotonically_with_mean_shift(mode):
    rng = np.random.default_rng(6)
    x, direction = rng.normal(size=(16, 4)), rng.normal(size=4)
    shifts = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    fn = jitted(mk_mmd, **MODES[mode])
    values = [float(fn(x, x + s * direction)) for s in shifts]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values


def test_errors_are_informative():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"same shape.*\(4, 3\) and \(5, 3\)"):
        mk_mmd(x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        mk_mmd(x[:1], x[:1])
    with pytest.raises(ValueError, match="num_kernels"):
        mk_mmd(x, x, num_kernels=0)
    with pytest.raises(ValueError, match="one per layer"):
        jmmd([x, x], [x, x], sigmas=(None,))
    with pytest.raises(ValueError, match=r"sigmas\[1\] must be > 0 or None, got -1.0"):
        jmmd([x, x], [x, x], sigmas=(None, -1.0))
    with pytest.raises(ValueError, match="same batch size"):
        jmmd([x, x[:2]], [x, x[:2]])

"""DomainBed's pairwise CORAL/MMD and M³SDA's moment distance against NumPy float64 loops."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.losses._numeric import FD_TOL, arr, assert_finite_nonzero, fd_grad, jit_grad, jitted, tol
from tljax.losses.coral import coral
from tljax.losses.dg_alignment import (
    DOMAINBED_GAMMAS,
    coral_penalty,
    gaussian_mmd_penalty,
    m3sda_moment_distance,
    pairwise_penalty,
)

pytestmark = pytest.mark.usefixtures("highest_precision")


def ref_coral_penalty(x, y):
    def stats(f):
        n, d = f.shape
        mean = np.array([sum(f[i, a] for i in range(n)) / n for a in range(d)])
        cov = np.array(
            [
                [sum((f[i, a] - mean[a]) * (f[i, b] - mean[b]) for i in range(n)) / (n - 1)]
                for a in range(d)
                for b in range(d)
            ]
        ).reshape(d, d)
        return mean, cov

    (mx, cx), (my, cy) = stats(x), stats(y)
    d = x.shape[1]
    return np.sum((mx - my) ** 2) / d + np.sum((cx - cy) ** 2) / d**2


def ref_mmd(x, y, gammas=DOMAINBED_GAMMAS):
    def kmean(a, b):
        total = 0.0
        for i in range(len(a)):
            for j in range(len(b)):
                d2 = np.sum((a[i] - b[j]) ** 2)
                total += sum(np.exp(-g * d2) for g in gammas)
        return total / (len(a) * len(b))

    return kmean(x, x) + kmean(y, y) - 2.0 * kmean(x, y)


def ref_m3sda(sources, target, k, normalization):
    def moment(f, o):
        if o == 1:
            return f.mean(axis=0)
        return ((f - f.mean(axis=0)) ** o).mean(axis=0)

    def dist(a, b):
        return math.sqrt(np.sum((a - b) ** 2))

    n = len(sources)
    total = 0.0
    for o in range(1, k + 1):
        to_t = sum(dist(moment(s, o), moment(target, o)) for s in sources)
        pairs = list(itertools.combinations(range(n), 2))
        between = sum(dist(moment(sources[i], o), moment(sources[j], o)) for i, j in pairs)
        if normalization == "code":
            total += (to_t + between) / 6.0
        else:
            total += to_t / n + (between / len(pairs) if pairs else 0.0)
    return total


def _domains(seed=0, sizes=(6, 5, 7), d=3, scale=1.0):
    rng = np.random.default_rng(seed)
    return [
        scale * (rng.normal(size=(n, d)) * (1 + 0.3 * k) + 0.2 * k) for k, n in enumerate(sizes)
    ]


# ---------------------------------------------------------------- pairwise + CORAL


def test_pairwise_penalty_is_the_mean_over_pairs(dtype):
    feats = _domains(1, sizes=(4, 4, 5, 6))
    f = jax.jit(lambda *fs: pairwise_penalty(fs, coral_penalty))
    out = f(*[arr(x, dtype) for x in feats])
    pairs = list(itertools.combinations(range(4), 2))
    ref = sum(ref_coral_penalty(feats[i], feats[j]) for i, j in pairs) / len(pairs)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, **tol(dtype))
    assert float(pairwise_penalty([arr(feats[0], dtype)], coral_penalty)) == 0.0
    with pytest.raises(ValueError, match="at least one domain"):
        pairwise_penalty([], coral_penalty)


def test_coral_penalty_matches_numpy_and_gradient(dtype):
    x, y = _domains(2, sizes=(7, 5))
    out = jitted(coral_penalty)(arr(x, dtype), arr(y, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_coral_penalty(x, y), **tol(dtype))


def test_coral_penalty_gradient(x64):
    x, y = _domains(3, sizes=(6, 5))
    gx, gy = jit_grad(coral_penalty, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, fd_grad(lambda a: ref_coral_penalty(a, y), x), **FD_TOL)
    np.testing.assert_allclose(gy, fd_grad(lambda b: ref_coral_penalty(x, b), y), **FD_TOL)
    assert_finite_nonzero(gx)


def test_coral_penalty_properties_and_relation_to_deep_coral():
    x, y = _domains(4, sizes=(8, 6))
    f = jitted(coral_penalty)
    np.testing.assert_allclose(f(x, x), 0.0, atol=1e-7)
    np.testing.assert_allclose(f(x, y), f(y, x), rtol=1e-5)
    # With equal means the covariance term is 4x Deep CORAL's ||ΔC||² / (4 d²).
    xc, yc = x - x.mean(0), y - y.mean(0)
    np.testing.assert_allclose(f(xc, yc), 4.0 * coral(jnp.asarray(xc), jnp.asarray(yc)), rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 rows"):
        coral_penalty(jnp.zeros((1, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"same d.*\(4, 3\) and \(4, 2\)"):
        coral_penalty(jnp.zeros((4, 3)), jnp.zeros((4, 2)))


# ---------------------------------------------------------------- Gaussian MMD


def test_gaussian_mmd_matches_numpy(dtype):
    # Small features so that several of the fixed gammas (0.001..1000) are active.
    x, y = _domains(5, sizes=(6, 4), scale=0.1)
    out = jitted(gaussian_mmd_penalty)(arr(x, dtype), arr(y, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_mmd(x, y), **tol(dtype))
    custom = jitted(gaussian_mmd_penalty, gammas=(0.5, 2.0))(arr(x, dtype), arr(y, dtype))
    np.testing.assert_allclose(custom, ref_mmd(x, y, (0.5, 2.0)), **tol(dtype))


def test_gaussian_mmd_gradient(x64):
    x, y = _domains(6, sizes=(5, 4), scale=0.1)
    gx = jit_grad(gaussian_mmd_penalty)(x, y)
    np.testing.assert_allclose(gx, fd_grad(lambda a: ref_mmd(a, y), x), **FD_TOL)
    assert_finite_nonzero(gx)


def test_gaussian_mmd_properties():
    x, y = _domains(7, sizes=(6, 6), scale=0.1)
    f = jitted(gaussian_mmd_penalty)
    assert float(f(x, x)) == 0.0
    np.testing.assert_allclose(f(x, y), f(y, x), rtol=1e-5)
    assert float(f(x, y)) > 0
    shifts = [float(f(x, x + s)) for s in (0.0, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(shifts, shifts[1:], strict=False)), shifts
    with pytest.raises(ValueError, match="gammas must be non-empty and > 0"):
        gaussian_mmd_penalty(jnp.zeros((2, 3)), jnp.zeros((2, 3)), gammas=(1.0, 0.0))


# ---------------------------------------------------------------- M³SDA


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("normalization", ["code", "paper"])
def test_m3sda_matches_numpy(dtype, k, normalization):
    *sources, target = _domains(8, sizes=(6, 5, 7, 4))
    f = jax.jit(
        lambda t, *s: m3sda_moment_distance(s, t, k=k, normalization=normalization)  # noqa: B023
    )
    out = f(arr(target, dtype), *[arr(s, dtype) for s in sources])
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_m3sda(sources, target, k, normalization), **tol(dtype))


def test_m3sda_single_source_paper_form():
    (source, target) = _domains(9, sizes=(6, 6))
    out = m3sda_moment_distance([jnp.asarray(source)], jnp.asarray(target), normalization="paper")
    np.testing.assert_allclose(out, ref_m3sda([source], target, 2, "paper"), rtol=1e-5)


def test_m3sda_gradient_and_zero_for_equal_domains(x64):
    *sources, target = _domains(10, sizes=(5, 6, 4))
    fn = functools.partial(m3sda_moment_distance, k=3, normalization="paper")
    g = jax.jit(jax.grad(lambda t, s: fn(s, t)))(target, sources)
    np.testing.assert_allclose(
        g, fd_grad(lambda t: ref_m3sda(sources, t, 3, "paper"), target), **FD_TOL
    )
    assert_finite_nonzero(g)
    # All domains equal: distance 0 and a finite (zero) gradient, not the NaN of d sqrt at 0.
    same = [target, target.copy()]
    assert float(fn(same, target)) == 0.0
    g0 = jax.grad(lambda t: fn([t, t], t))(target)
    assert np.all(np.isfinite(g0))
    np.testing.assert_array_equal(g0, 0.0)


def test_m3sda_errors():
    t = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="at least one source"):
        m3sda_moment_distance([], t)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        m3sda_moment_distance([t], t, k=0)
    with pytest.raises(ValueError, match="normalization must be"):
        m3sda_moment_distance([t], t, normalization="bogus")
    with pytest.raises(ValueError, match="same d"):
        m3sda_moment_distance([jnp.zeros((4, 2))], t)

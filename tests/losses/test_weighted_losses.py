"""Per-example weights in the domain-adversarial loss and the MMD, against NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from tljax.losses.adversarial import domain_adversarial_loss, normalize_by_max
from tljax.losses.mmd import gaussian_kernels, jmmd, mk_mmd

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 3)).astype(np.float32)
Y = (RNG.normal(size=(6, 3)) + 0.5).astype(np.float32)
WS = np.array([1.0, 0.2, 0.0, 0.5, 1.0, 0.3], np.float32)
WT = np.array([0.1, 1.0, 1.0, 0.4, 0.7, 0.9], np.float32)


def _bce(logit, label):
    p = 1 / (1 + np.exp(-logit.astype(np.float64)))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def test_adversarial_default_is_dann():
    ds, dt = RNG.normal(size=5), RNG.normal(size=7)
    ref = 0.5 * (_bce(ds, 1).mean() + _bce(dt, 0).mean())
    np.testing.assert_allclose(domain_adversarial_loss(ds, dt), ref, rtol=1e-5)


def test_adversarial_weighted_matches_numpy():
    ds, dt = RNG.normal(size=6), RNG.normal(size=6)
    ref = 0.5 * ((WS * _bce(ds, 1)).mean() + (WT * _bce(dt, 0)).mean())
    out = domain_adversarial_loss(ds, dt, source_weights=WS, target_weights=WT)
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    ones = domain_adversarial_loss(ds, dt, source_weights=np.ones(6))
    np.testing.assert_allclose(ones, domain_adversarial_loss(ds, dt), rtol=1e-6)
    np.testing.assert_allclose(normalize_by_max(jnp.array([1.0, 4.0, 2.0])), [0.25, 1, 0.5])


def _weighted_mmd_numpy(k, ws, wt, unbiased):
    n = len(ws)
    ws, wt = ws / ws.sum(), wt / wt.sum()
    total = 0.0
    for (a, wa), (b, wb), sign in (
        ((0, ws), (0, ws), 1.0),
        ((n, wt), (n, wt), 1.0),
        ((0, ws), (n, wt), -2.0),
    ):
        s = 0.0
        for i in range(n):
            for j in range(n):
                if unbiased and sign > 0 and i == j:
                    continue
                s += wa[i] * wb[j] * k[a + i, b + j]
        if unbiased and sign > 0:
            s /= 1 - np.sum(wa**2)
        total += sign * s
    return total


@pytest.mark.parametrize("unbiased", [True, False])
def test_weighted_mmd_matches_numpy(unbiased):
    k = np.asarray(gaussian_kernels(jnp.asarray(X), jnp.asarray(Y)), np.float64)
    ref = _weighted_mmd_numpy(k, WS.astype(np.float64), WT.astype(np.float64), unbiased)
    out = mk_mmd(X, Y, unbiased=unbiased, source_weights=WS, target_weights=WT)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("unbiased", [True, False])
def test_uniform_weights_are_the_unweighted_estimator(unbiased):
    plain = mk_mmd(X, Y, unbiased=unbiased)
    uniform = mk_mmd(X, Y, unbiased=unbiased, source_weights=np.full(6, 3.0))
    np.testing.assert_allclose(uniform, plain, rtol=1e-5, atol=1e-6)
    j = jmmd([X], [Y], unbiased=unbiased, target_weights=np.ones(6))
    np.testing.assert_allclose(j, plain, rtol=1e-5, atol=1e-6)


def test_weight_errors():
    with pytest.raises(ValueError, match="quadratic"):
        mk_mmd(X, Y, linear=True, source_weights=WS)
    with pytest.raises(ValueError, match="shape"):
        mk_mmd(X, Y, source_weights=WS[:3])

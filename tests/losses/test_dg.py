"""IRM, V-REx, GroupDRO, Mixup and the K-way domain-adversarial loss against NumPy float64."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
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
from tljax.losses.dg import (
    cdann_class_weights,
    domain_adversarial_ce,
    domain_pairs,
    group_dro_loss,
    group_dro_weights,
    irm_penalty,
    mix_inputs,
    mixup_lambda,
    mixup_loss,
    vrex_penalty,
)


def ref_ce(z, y):
    """Per-example cross-entropy, from an explicit softmax."""
    p = softmax_rows(z)
    return np.array([-np.log(p[i, y[i]]) for i in range(len(y))])


def ref_scale_grad(z, y):
    """Closed form d/dw mean CE(w z, y) at w = 1: mean_i(Σ_k p_ik z_ik − z_iy)."""
    p = softmax_rows(z)
    return np.mean([np.dot(p[i], z[i]) - z[i, y[i]] for i in range(len(y))])


def ref_irm(z, y):
    return ref_scale_grad(z[0::2], y[0::2]) * ref_scale_grad(z[1::2], y[1::2])


def _logits(seed=0, n=7, c=4):
    rng = np.random.default_rng(seed)
    return 2.0 * rng.normal(size=(n, c)), rng.integers(0, c, size=n)


# ---------------------------------------------------------------- IRM


@pytest.mark.parametrize("n", [6, 7])
def test_irm_matches_closed_form(dtype, n):
    z, y = _logits(n=n)
    out = jitted(irm_penalty)(arr(z, dtype), jnp.asarray(y))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_irm(z, y), **tol(dtype))


def test_irm_gradient_matches_finite_differences(x64):
    z, y = _logits(1)
    g = jit_grad(irm_penalty)(z, jnp.asarray(y))
    np.testing.assert_allclose(g, fd_grad(lambda a: ref_irm(a, y), z), **FD_TOL)
    assert_finite_nonzero(g)


def test_irm_zero_when_a_half_is_optimal_in_scale():
    # Rows whose logits are all equal have softmax uniform: Σ p z − z_y = 0 for every label,
    # so the even half's scale gradient vanishes and the penalty with it.
    z, y = _logits(2, n=6)
    z[0::2] = 1.3
    assert abs(float(jitted(irm_penalty)(z, jnp.asarray(y)))) < 1e-7
    # ... while with the same label-consistent direction in both halves it is positive.
    z2 = np.zeros((6, 3))
    y2 = np.array([0, 0, 1, 1, 2, 2])
    z2[np.arange(6), y2] = 0.5  # under-confident in the right class: both gradients < 0
    assert float(jitted(irm_penalty)(z2, jnp.asarray(y2))) > 0


def test_irm_errors():
    with pytest.raises(ValueError, match="at least 2"):
        irm_penalty(jnp.zeros((1, 3)), jnp.zeros((1,), jnp.int32))
    with pytest.raises(ValueError, match=r"labels of shape \(4,\)"):
        irm_penalty(jnp.zeros((4, 3)), jnp.zeros((3,), jnp.int32))


# ---------------------------------------------------------------- V-REx


def test_vrex_matches_biased_variance_and_gradient(dtype):
    risks = np.array([0.3, 1.2, 0.7, 2.0])
    out = jitted(vrex_penalty)(arr(risks, dtype))
    mean = sum(risks) / len(risks)
    ref = sum((r - mean) ** 2 for r in risks) / len(risks)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, **tol(dtype))
    g = jit_grad(vrex_penalty)(arr(risks, dtype))
    np.testing.assert_allclose(g, fd_grad(lambda r: np.var(r), risks), **tol(dtype, 10))
    assert_finite_nonzero(g)


def test_vrex_zero_for_equal_risks():
    # Zero up to the rounding of the mean (0.83 is not a binary fraction).
    np.testing.assert_allclose(jitted(vrex_penalty)(jnp.full((5,), 0.83)), 0.0, atol=1e-12)
    np.testing.assert_array_equal(jit_grad(vrex_penalty)(jnp.full((3,), 2.0)), 0.0)


# ---------------------------------------------------------------- GroupDRO


def test_group_dro_weights_match_numpy(dtype):
    q = np.array([0.1, 0.5, 0.4])
    risks = np.array([2.0, 0.5, 1.0])
    eta = 0.3
    new = jitted(group_dro_weights, eta=eta)(arr(q, dtype), arr(risks, dtype))
    ref = np.array([q[i] * np.exp(eta * risks[i]) for i in range(3)])
    ref /= ref.sum()
    assert new.dtype == dtype
    np.testing.assert_allclose(new, ref, **tol(dtype))
    loss = jitted(group_dro_loss)(new, arr(risks, dtype))
    np.testing.assert_allclose(loss, np.dot(ref, risks), **tol(dtype))


def test_group_dro_stays_on_simplex_and_worst_group_grows():
    rng = np.random.default_rng(3)
    step = jitted(group_dro_weights, eta=0.05)
    q = jnp.ones(4)  # DomainBed's unnormalised start
    risks = jnp.asarray([0.5, 2.5, 1.0, 0.8])
    history = []
    for _ in range(20):
        noisy = risks + 0.05 * jnp.asarray(rng.normal(size=4))
        q = step(q, noisy)
        history.append(np.asarray(q))
        assert np.all(np.asarray(q) >= 0)
        np.testing.assert_allclose(np.sum(np.asarray(q)), 1.0, rtol=1e-6)
    worst = [h[1] for h in history]
    assert all(a < b for a, b in zip(worst, worst[1:], strict=False)), worst
    assert int(np.argmax(history[-1])) == 1


def test_group_dro_gradients():
    q = jnp.asarray([0.2, 0.3, 0.5])
    risks = jnp.asarray([1.0, 2.0, 0.5])
    # No gradient flows through the weights' update ...
    g = jax.jit(jax.grad(lambda r: jnp.sum(group_dro_weights(q, r, eta=0.1) * r)))(risks)
    np.testing.assert_allclose(g, group_dro_weights(q, risks, eta=0.1), rtol=1e-6)
    # ... and the robust loss's gradient with respect to the risks is q.
    np.testing.assert_allclose(jit_grad(group_dro_loss, argnums=1)(q, risks), q, rtol=1e-6)
    np.testing.assert_array_equal(jit_grad(group_dro_loss, argnums=0)(q, risks), 0.0)


def test_group_dro_errors():
    with pytest.raises(ValueError, match="same shape"):
        group_dro_weights(jnp.ones(3), jnp.ones(2), eta=0.1)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        group_dro_weights(jnp.ones(3), jnp.ones(3), eta=-1.0)


# ---------------------------------------------------------------- Mixup


def test_mixup_matches_numpy(dtype):
    rng = np.random.default_rng(4)
    xi, xj = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))
    z, yi = _logits(5, n=5, c=3)
    yj = rng.integers(0, 3, size=5)
    lam = 0.3
    mixed = jitted(mix_inputs)(arr(xi, dtype), arr(xj, dtype), lam)
    assert mixed.dtype == dtype
    np.testing.assert_allclose(mixed, lam * xi + (1 - lam) * xj, **tol(dtype))
    loss = jitted(mixup_loss)(arr(z, dtype), jnp.asarray(yi), jnp.asarray(yj), lam)
    ref = lam * ref_ce(z, yi).mean() + (1 - lam) * ref_ce(z, yj).mean()
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss, ref, **tol(dtype))
    # λ = 1 is plain ERM on the first batch.
    np.testing.assert_allclose(
        jitted(mixup_loss)(arr(z, dtype), jnp.asarray(yi), jnp.asarray(yj), 1.0),
        ref_ce(z, yi).mean(),
        **tol(dtype),
    )


def test_mixup_loss_gradient(x64):
    z, yi = _logits(6, n=4, c=3)
    yj = np.array([2, 0, 1, 1])
    f = functools.partial(mixup_loss, y_i=jnp.asarray(yi), y_j=jnp.asarray(yj), lam=0.7)
    g = jax.jit(jax.grad(f))(z)
    ref = lambda a: 0.7 * ref_ce(a, yi).mean() + 0.3 * ref_ce(a, yj).mean()  # noqa: E731
    np.testing.assert_allclose(g, fd_grad(ref, z), **FD_TOL)


def test_mixup_lambda_is_beta_distributed():
    alpha = 0.2
    sample = jax.jit(mixup_lambda, static_argnums=(1, 2))
    lam = np.asarray(sample(jax.random.key(0), alpha, (20000,)))
    assert lam.dtype == np.float32
    assert np.all((lam >= 0) & (lam <= 1))
    # Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1)); standard errors ~0.003 and ~0.001.
    np.testing.assert_allclose(lam.mean(), 0.5, atol=0.015)
    np.testing.assert_allclose(lam.var(), 1.0 / (4.0 * (2.0 * alpha + 1.0)), atol=0.006)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        mixup_lambda(jax.random.key(0), 0.0)


def test_domain_pairs_reproduce_random_pairs_of_minibatches():
    pairs = jax.jit(domain_pairs, static_argnums=0)
    seen = set()
    for seed in range(12):
        first, second = (np.asarray(a) for a in pairs(5, jax.random.key(seed)))
        assert first.dtype == np.int32 and first.shape == (5,)
        # A permutation on each side; pair k's second domain is pair (k+1)'s first, cyclically.
        assert sorted(first) == list(range(5)) and sorted(second) == list(range(5))
        np.testing.assert_array_equal(second, np.roll(first, -1))
        assert np.all(first != second)
        seen.add(tuple(first))
    assert len(seen) > 1, "the permutation does not depend on the key"
    first, second = domain_pairs(1, jax.random.key(0))
    assert first.tolist() == [0] and second.tolist() == [0]
    with pytest.raises(ValueError, match="positive int"):
        domain_pairs(0, jax.random.key(0))


def test_mix_inputs_shape_error():
    with pytest.raises(ValueError, match=r"same shape.*\(4, 2\) and \(3, 2\)"):
        mix_inputs(jnp.zeros((4, 2)), jnp.zeros((3, 2)), 0.5)


# ---------------------------------------------------------------- DANN / CDANN


def ref_cdann_weights(y, d, num_classes, num_domains, per_domain):
    w = np.empty(len(y))
    for i in range(len(y)):
        if per_domain:
            count = sum(1 for j in range(len(y)) if y[j] == y[i] and d[j] == d[i])
            w[i] = 1.0 / (count * num_classes * num_domains)
        else:
            count = sum(1 for j in range(len(y)) if y[j] == y[i])
            w[i] = 1.0 / (count * num_classes)
    return w


def test_domain_adversarial_ce_matches_numpy(dtype):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(9, 3))
    dom = rng.integers(0, 3, size=9)
    w = rng.uniform(size=9)
    f = jitted(domain_adversarial_ce)
    out = f(arr(logits, dtype), jnp.asarray(dom))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_ce(logits, dom).mean(), **tol(dtype))
    fw = jax.jit(lambda z, k, w: domain_adversarial_ce(z, k, weights=w))
    out_w = fw(arr(logits, dtype), jnp.asarray(dom), arr(w, dtype))
    np.testing.assert_allclose(out_w, np.sum(w * ref_ce(logits, dom)), **tol(dtype))


def test_domain_adversarial_ce_gradient(x64):
    rng = np.random.default_rng(8)
    logits, dom, w = rng.normal(size=(6, 3)), rng.integers(0, 3, size=6), rng.uniform(size=6)
    g = jax.jit(jax.grad(lambda z: domain_adversarial_ce(z, jnp.asarray(dom), weights=w)))(logits)
    np.testing.assert_allclose(g, fd_grad(lambda z: np.sum(w * ref_ce(z, dom)), logits), **FD_TOL)
    assert_finite_nonzero(g)


@pytest.mark.parametrize("per_domain", [False, True])
def test_cdann_class_weights_match_numpy(per_domain):
    y = np.array([0, 1, 1, 2, 0, 0, 2, 1, 1, 2, 0, 2])
    d = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    w = jax.jit(
        functools.partial(cdann_class_weights, num_classes=3, num_domains=3, per_domain=per_domain)
    )(jnp.asarray(y), jnp.asarray(d))
    assert w.dtype == jnp.float32
    np.testing.assert_allclose(w, ref_cdann_weights(y, d, 3, 3, per_domain), rtol=1e-6)
    # Every class occurs (in every domain): the weights sum to 1 and each class's total is equal.
    np.testing.assert_allclose(np.sum(w), 1.0, rtol=1e-6)
    totals = [np.sum(np.asarray(w)[y == c]) for c in range(3)]
    np.testing.assert_allclose(totals, 1.0 / 3.0, rtol=1e-6)


def test_cdann_class_weights_missing_class_and_errors():
    y, d = jnp.asarray([0, 0, 0, 1]), jnp.asarray([0, 1, 0, 1])
    w = cdann_class_weights(y, d, 4, 2)
    # Two of four classes present: Σ w = 2 / 4 (DomainBed's normalisation with C = 4).
    np.testing.assert_allclose(np.sum(w), 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        cdann_class_weights(y, d, 0, 2)
    with pytest.raises(ValueError, match="same length"):
        cdann_class_weights(y, d[:3], 2, 2)
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\)"):
        domain_adversarial_ce(jnp.zeros((4, 2)), d, weights=jnp.ones(3))

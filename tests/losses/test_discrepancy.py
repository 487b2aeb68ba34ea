"""MCD classifier discrepancy and class-balance term against loop-based NumPy references."""

from __future__ import annotations

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
from tljax.losses.discrepancy import class_balance_entropy, classifier_discrepancy


def ref(z1, z2):
    p1, p2 = softmax_rows(z1), softmax_rows(z2)
    b, c = p1.shape
    return sum(abs(p1[i, k] - p2[i, k]) for i in range(b) for k in range(c)) / (b * c)


RNG = np.random.default_rng(0)
Z1, Z2 = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))


def test_matches_reference_and_is_symmetric(dtype):
    fn = jitted(classifier_discrepancy)
    out = fn(arr(Z1, dtype), arr(Z2, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref(Z1, Z2), **tol(dtype))
    np.testing.assert_allclose(fn(arr(Z2, dtype), arr(Z1, dtype)), out, rtol=1e-7)
    assert abs(float(fn(arr(Z1, dtype), arr(Z1, dtype)))) < 1e-7  # 0 up to XLA fusion rounding
    # Softmax is shift-invariant: logits differing by a per-row constant agree.
    assert abs(float(fn(arr(Z1, dtype), arr(Z1 + 3.0, dtype)))) < 1e-6


def test_gradient(x64):
    g1, g2 = jit_grad(classifier_discrepancy, argnums=(0, 1))(Z1, Z2)
    np.testing.assert_allclose(g1, fd_grad(lambda a: ref(a, Z2), Z1), **FD_TOL)
    np.testing.assert_allclose(g2, fd_grad(lambda b: ref(Z1, b), Z2), **FD_TOL)
    assert_finite_nonzero(g1)
    assert_finite_nonzero(g2)


def test_errors_are_informative():
    with pytest.raises(ValueError, match=r"\(5, 3\) and \(5, 4\)"):
        classifier_discrepancy(np.zeros((5, 3)), np.zeros((5, 4)))


# -- MCD's class-balance "entropy" (TLlib's tllib/alignment/mcd.py entropy) ---------------


def ref_class_balance(z, eps=1e-6):
    """``-1/C Σ_c log(1/B Σ_i p_ic + eps)`` with loops, in float64."""
    p = softmax_rows(z)
    b, c = p.shape
    return -sum(np.log(sum(p[i, k] for i in range(b)) / b + eps) for k in range(c)) / c


def test_class_balance_entropy_matches_reference(dtype):
    fn = jitted(class_balance_entropy)
    out = fn(arr(Z1, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_class_balance(Z1), **tol(dtype))
    # It is a term on the batch mean: the order of the examples does not matter ...
    np.testing.assert_allclose(fn(arr(Z1[::-1], dtype)), out, rtol=1e-6)
    # ... and it differs from the mean per-sample entropy.
    p = softmax_rows(Z1)
    per_sample = np.mean(-np.sum(p * np.log(p), axis=1))
    assert abs(float(out) - per_sample) > 0.1


def test_class_balance_entropy_is_minimal_for_balanced_batches():
    c = 3
    # Confident but balanced (each class once): p̄ is uniform, L = log C.
    balanced = 20.0 * np.eye(c)
    np.testing.assert_allclose(class_balance_entropy(balanced), np.log(c), rtol=1e-5)
    # Confident and all the same class: p̄ = one-hot, L ≈ −(2/3) log(1e-6) ≫ log C.
    collapsed = np.tile(20.0 * np.eye(c)[:1], (c, 1))
    assert float(class_balance_entropy(collapsed)) > 8.0
    # Bounded by the eps even when a class gets no mass at all.
    assert np.isfinite(float(class_balance_entropy(np.array([[0.0, -1e4, -1e4]]))))


def test_class_balance_entropy_gradient(x64):
    g = jit_grad(class_balance_entropy)(Z1)
    np.testing.assert_allclose(g, fd_grad(ref_class_balance, Z1), **FD_TOL)
    assert_finite_nonzero(g)


def test_class_balance_entropy_rejects_non_2d():
    with pytest.raises(ValueError, match=r"\(5,\)"):
        class_balance_entropy(np.zeros(5))

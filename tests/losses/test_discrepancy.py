"""MCD classifier discrepancy against a loop-based NumPy reference."""

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
from tljax.losses.discrepancy import classifier_discrepancy


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

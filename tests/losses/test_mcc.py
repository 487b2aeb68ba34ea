"""MCC against a loop-based NumPy transcription of the paper / TLlib."""

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
from tljax.losses.mcc import mcc

T = 2.5


def ref_weights(z, temperature=T):
    p = softmax_rows(z / temperature)
    h = np.array([-sum(v * np.log(v) for v in row) for row in p])
    w = 1.0 + np.exp(-h)
    return len(z) * w / w.sum()


def ref_mcc(z, temperature=T, weights=None):
    """``weights`` fixed: the detached per-sample weights (for finite differences)."""
    p = softmax_rows(z / temperature)
    w = ref_weights(z, temperature) if weights is None else weights
    b, c = p.shape
    conf = np.zeros((c, c))
    for j in range(c):
        for k in range(c):
            conf[j, k] = sum(w[i] * p[i, j] * p[i, k] for i in range(b))
    col_sums = [sum(conf[j, k] for j in range(c)) for k in range(c)]
    normed = np.array([[conf[j, k] / col_sums[k] for k in range(c)] for j in range(c)])
    return (normed.sum() - np.trace(normed)) / c


LOGITS = np.random.default_rng(0).normal(size=(6, 4)) * 3.0


def test_matches_reference(dtype):
    out = jitted(mcc)(arr(LOGITS, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_mcc(LOGITS), **tol(dtype))
    np.testing.assert_allclose(
        jitted(mcc, temperature=1.0)(arr(LOGITS, dtype)), ref_mcc(LOGITS, 1.0), **tol(dtype)
    )


def test_gradient_treats_weights_as_constants(x64):
    g = jit_grad(mcc)(LOGITS)
    fixed = ref_weights(LOGITS)
    np.testing.assert_allclose(g, fd_grad(lambda z: ref_mcc(z, weights=fixed), LOGITS), **FD_TOL)
    moving = fd_grad(ref_mcc, LOGITS)
    assert np.max(np.abs(moving - g)) > 1e-6
    assert_finite_nonzero(g)


def test_bounds():
    """0 ≤ MCC ≤ 1 − 1/C; the upper bound is attained by uniform predictions."""
    rng = np.random.default_rng(1)
    num_classes = 4
    fn = jitted(mcc)
    for scale in (0.1, 1.0, 5.0, 30.0):
        value = float(fn(np.asarray(rng.normal(size=(8, num_classes)) * scale, np.float32)))
        assert 0.0 <= value <= 1.0 - 1.0 / num_classes + 1e-6
    np.testing.assert_allclose(fn(np.zeros((8, num_classes))), 1.0 - 1.0 / num_classes, rtol=1e-6)
    confident = 100.0 * np.tile(np.eye(num_classes), (2, 1))
    assert float(fn(confident)) < 1e-6


def test_errors_are_informative():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        mcc(np.zeros((3, 2)), temperature=0)
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        mcc(np.zeros(3))

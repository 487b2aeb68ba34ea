"""FixMatch pseudo-label loss and mean-teacher consistency against NumPy references."""

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
from tljax.losses.self_training import consistency_mse, pseudo_label_loss


def ref_pseudo(weak, strong, threshold):
    q, p = softmax_rows(weak), softmax_rows(strong)
    total, kept = 0.0, 0
    for i in range(len(weak)):
        label = int(np.argmax(q[i]))
        if q[i, label] >= threshold:
            total += -np.log(p[i, label])
            kept += 1
    return total / len(weak), kept / len(weak)


def ref_mse(student, teacher):
    p, q = softmax_rows(student), softmax_rows(teacher)
    b, c = p.shape
    return sum((p[i, k] - q[i, k]) ** 2 for i in range(b) for k in range(c)) / (b * c)


RNG = np.random.default_rng(0)
# Rows 0-2 are confident (max prob > 0.9), rows 3-5 are not.
WEAK = np.concatenate([RNG.normal(size=(3, 4)) + 6 * np.eye(4)[[0, 2, 1]], RNG.normal(size=(3, 4))])
STRONG = RNG.normal(size=(6, 4))


@pytest.mark.parametrize("threshold", [0.0, 0.9, 1.0])
def test_pseudo_label_matches_reference(dtype, threshold):
    loss, rate = jitted(pseudo_label_loss, threshold=threshold)(
        arr(WEAK, dtype), arr(STRONG, dtype)
    )
    assert loss.dtype == dtype
    ref_loss, ref_rate = ref_pseudo(WEAK, STRONG, threshold)
    np.testing.assert_allclose(loss, ref_loss, **tol(dtype))
    np.testing.assert_allclose(rate, ref_rate)


def test_pseudo_label_masks_below_threshold():
    fn = jitted(pseudo_label_loss, threshold=0.9)
    loss, rate = fn(WEAK, STRONG)
    np.testing.assert_allclose(rate, 0.5)
    # Changing the strong logits of masked rows changes nothing.
    perturbed = STRONG.copy()
    perturbed[3:] += RNG.normal(size=(3, 4)) * 5
    np.testing.assert_allclose(fn(WEAK, perturbed)[0], loss, rtol=1e-6)
    # No confident sample: zero loss and zero gradient.
    loss, rate = fn(WEAK[3:], STRONG[3:])
    assert float(loss) == 0.0 and float(rate) == 0.0
    assert np.all(jit_grad(lambda w, s: fn(w, s)[0], argnums=1)(WEAK[3:], STRONG[3:]) == 0)


def test_pseudo_label_gradients(x64):
    def fn(w, s):
        return pseudo_label_loss(w, s, threshold=0.9)[0]

    g_weak, g_strong = jit_grad(fn, argnums=(0, 1))(WEAK, STRONG)
    assert np.all(g_weak == 0)  # pseudo labels are detached
    expected = fd_grad(lambda s: ref_pseudo(WEAK, s, 0.9)[0], STRONG)
    np.testing.assert_allclose(g_strong, expected, **FD_TOL)
    assert_finite_nonzero(g_strong)


def test_consistency_mse(dtype):
    out = jitted(consistency_mse)(arr(STRONG, dtype), arr(WEAK, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_mse(STRONG, WEAK), **tol(dtype))


def test_consistency_mse_gradients(x64):
    g_student, g_teacher = jit_grad(consistency_mse, argnums=(0, 1))(STRONG, WEAK)
    np.testing.assert_allclose(g_student, fd_grad(lambda s: ref_mse(s, WEAK), STRONG), **FD_TOL)
    assert np.all(g_teacher == 0)
    assert_finite_nonzero(g_student)


def test_errors_are_informative():
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        pseudo_label_loss(np.zeros((2, 3)), np.zeros((2, 3)), threshold=1.5)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        consistency_mse(np.zeros((2, 3)), np.zeros((2, 4)))

"""Entropy and information maximisation against loop-based NumPy references."""

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
from tljax.losses.entropy import entropy, entropy_per_sample, information_maximization


def ref_entropy_rows(z):
    p = softmax_rows(z)
    return np.array([-sum(v * np.log(v) for v in row) for row in p])


def ref_im(z):
    p = softmax_rows(z)
    mean = p.sum(axis=0) / len(p)
    return ref_entropy_rows(z).mean() + sum(v * np.log(v) for v in mean)


LOGITS = np.random.default_rng(0).normal(size=(6, 4)) * 2.0


def test_values_match_reference(dtype):
    z = arr(LOGITS, dtype)
    per_sample = jitted(entropy_per_sample)(z)
    assert per_sample.shape == (6,) and per_sample.dtype == dtype
    np.testing.assert_allclose(per_sample, ref_entropy_rows(LOGITS), **tol(dtype))
    np.testing.assert_allclose(jitted(entropy)(z), ref_entropy_rows(LOGITS).mean(), **tol(dtype))
    im = jitted(information_maximization)(z)
    assert im.dtype == dtype
    np.testing.assert_allclose(im, ref_im(LOGITS), **tol(dtype))


@pytest.mark.parametrize(
    ("fn", "ref"),
    [(entropy, lambda z: ref_entropy_rows(z).mean()), (information_maximization, ref_im)],
    ids=["entropy", "im"],
)
def test_gradient_matches_finite_differences(x64, fn, ref):
    g = jit_grad(fn)(LOGITS)
    np.testing.assert_allclose(g, fd_grad(ref, LOGITS), **FD_TOL)
    assert_finite_nonzero(g)


def test_analytic_values():
    num_classes = 5
    ent, im = jitted(entropy), jitted(information_maximization)
    uniform = np.zeros((3, num_classes), np.float32)
    np.testing.assert_allclose(ent(uniform), np.log(num_classes), rtol=1e-6)
    # Uniform predictions: IM = log C − log C = 0; confident, balanced ones: −log C.
    np.testing.assert_allclose(im(uniform), 0.0, atol=1e-6)
    confident = 50.0 * np.eye(num_classes, dtype=np.float32)
    np.testing.assert_allclose(im(confident), -np.log(num_classes), rtol=1e-5)
    assert -np.log(4) <= float(im(np.float32(LOGITS))) <= 0.0


def test_extreme_logits_stay_finite():
    z = np.asarray([[1e4, -1e4, 0.0], [0.0, 0.0, 3e4]], np.float32)
    for fn in (entropy, information_maximization):
        assert np.isfinite(float(jitted(fn)(z)))
        assert np.all(np.isfinite(jit_grad(fn)(z)))


def test_errors_are_informative():
    with pytest.raises(ValueError, match=r"\(batch, num_classes\), got \(4,\)"):
        entropy(np.zeros(4))

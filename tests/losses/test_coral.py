"""CORAL against a loop-based NumPy covariance."""

from __future__ import annotations

import numpy as np
import pytest

from tests.losses._numeric import FD_TOL, arr, assert_finite_nonzero, fd_grad, jit_grad, jitted, tol
from tljax.losses.coral import coral


def ref_coral(xs, xt, style="paper"):
    def stats(f):
        n, d = f.shape
        mean = np.array([sum(f[i, a] for i in range(n)) / n for a in range(d)])
        cov = np.zeros((d, d))
        for a in range(d):
            for b in range(d):
                cov[a, b] = sum((f[i, a] - mean[a]) * (f[i, b] - mean[b]) for i in range(n))
        return mean, cov / (n - 1)

    (ms, cs), (mt, ct) = stats(xs), stats(xt)
    d = xs.shape[1]
    cov_term = sum((cs[a, b] - ct[a, b]) ** 2 for a in range(d) for b in range(d))
    if style == "paper":
        return cov_term / (4 * d * d)
    return cov_term / d**2 + np.sum((ms - mt) ** 2) / d


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(7, 3)), 1.5 * rng.normal(size=(5, 3)) + 0.3


@pytest.mark.parametrize("style", ["paper", "tllib"])
def test_matches_reference(dtype, style):
    xs, xt = _data()
    out = jitted(coral, style=style)(arr(xs, dtype), arr(xt, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_coral(xs, xt, style), **tol(dtype))


@pytest.mark.parametrize("style", ["paper", "tllib"])
def test_gradient_matches_finite_differences(x64, style):
    xs, xt = _data(1)
    gs, gt = jit_grad(coral, argnums=(0, 1), style=style)(xs, xt)
    np.testing.assert_allclose(gs, fd_grad(lambda a: ref_coral(a, xt, style), xs), **FD_TOL)
    np.testing.assert_allclose(gt, fd_grad(lambda b: ref_coral(xs, b, style), xt), **FD_TOL)
    assert_finite_nonzero(gs)
    assert_finite_nonzero(gt)


def test_zero_for_identical_batches_and_shift_behaviour():
    rng = np.random.default_rng(2)
    x, direction = rng.normal(size=(8, 3)), rng.normal(size=3)
    paper, tllib = jitted(coral), jitted(coral, style="tllib")
    assert abs(float(paper(x, x))) < 1e-7 and abs(float(tllib(x, x))) < 1e-7
    # The paper's loss sees only covariances: invariant to a mean shift ...
    np.testing.assert_allclose(paper(x, x + 3.0 * direction), 0.0, atol=1e-6)
    # ... and grows monotonically with a covariance (scale) shift.
    scaled = [float(paper(x, s * x)) for s in (1.0, 1.5, 2.0, 3.0)]
    assert all(a < b for a, b in zip(scaled, scaled[1:], strict=False)), scaled
    # TLlib's variant also matches means: grows monotonically with a mean shift.
    shifted = [float(tllib(x, x + s * direction)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(shifted, shifted[1:], strict=False)), shifted


def test_errors_are_informative():
    with pytest.raises(ValueError, match=r"same d.*\(4, 3\) and \(4, 2\)"):
        coral(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        coral(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="style must be"):
        coral(np.zeros((4, 3)), np.zeros((4, 3)), style="bogus")

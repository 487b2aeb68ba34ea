"""MDD against a loop-based NumPy transcription of TLlib's ClassificationMDD."""

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
from tljax.losses.mdd import mdd, shift_log


def ref_mdd(y_s, y_s_adv, y_t, y_t_adv, margin=4.0, offset=1e-6):
    """TLlib: −γ CE(y_s_adv, argmax y_s) + log(min(1 − softmax(y_t_adv)[argmax y_t] + ε, 1))."""
    ps, pt = softmax_rows(y_s_adv), softmax_rows(y_t_adv)
    source = np.mean([-np.log(ps[i, int(np.argmax(y_s[i]))]) for i in range(len(y_s))])
    target = np.mean(
        [np.log(min(1.0 - pt[i, int(np.argmax(y_t[i]))] + offset, 1.0)) for i in range(len(y_t))]
    )
    return -margin * source + target


RNG = np.random.default_rng(0)
ALL = YS, YSA, YT, YTA = tuple(RNG.normal(size=(5, 4)) * 2 for _ in range(4))


def test_matches_reference(dtype):
    logits = {k: arr(v, dtype) for k, v in zip(("y_s", "y_s_adv", "y_t", "y_t_adv"), ALL)}
    out = jitted(mdd)(**logits)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_mdd(*ALL), **tol(dtype))
    out = jitted(mdd, margin=2.0, offset=0.0)(**logits)
    np.testing.assert_allclose(out, ref_mdd(*ALL, 2.0, 0.0), **tol(dtype))


def _loss(ys, ysa, yt, yta):
    return mdd(y_s=ys, y_s_adv=ysa, y_t=yt, y_t_adv=yta)


def test_gradients(x64):
    g_ys, g_ysa, g_yt, g_yta = jit_grad(_loss, argnums=(0, 1, 2, 3))(YS, YSA, YT, YTA)
    np.testing.assert_allclose(g_ysa, fd_grad(lambda a: ref_mdd(YS, a, YT, YTA), YSA), **FD_TOL)
    np.testing.assert_allclose(g_yta, fd_grad(lambda a: ref_mdd(YS, YSA, YT, a), YTA), **FD_TOL)
    # The main head gets no gradient from D (pseudo labels are an argmax).
    assert np.all(g_ys == 0) and np.all(g_yt == 0)
    assert_finite_nonzero(g_ysa)
    assert_finite_nonzero(g_yta)


def test_sign_convention_adversary_maximises_d():
    """An adversary agreeing on source and disagreeing on target scores a larger D."""
    main = 5.0 * np.eye(4)
    fn = jitted(_loss)
    agree_everywhere = float(fn(main, main, main, main))
    ideal_adversary = float(fn(main, main, main, -main))
    assert ideal_adversary > agree_everywhere


def test_confident_target_stays_finite_and_bounded():
    y = np.asarray([[60.0, 0.0, 0.0], [0.0, 80.0, 0.0]], np.float32)
    value = float(jitted(_loss)(y, y, y, y))
    # Source CE ≈ 0 and log(1 − p_t + 1e-6) is clamped below at ≈ log(1e-6).
    assert np.isfinite(value) and value >= np.log(1e-6) - 1e-3
    assert np.all(np.isfinite(jit_grad(_loss, argnums=3)(y, y, y, y)))


def test_shift_log():
    x = np.asarray([0.0, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(jitted(shift_log)(x), np.log([1e-6, 0.5 + 1e-6, 1.0]), rtol=1e-6)


def test_errors_are_informative():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"target main and adversarial.*\(3, 4\) and \(2, 4\)"):
        mdd(y_s=z, y_s_adv=z, y_t=z, y_t_adv=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="different class counts"):
        mdd(y_s=z, y_s_adv=z, y_t=np.zeros((3, 5)), y_t_adv=np.zeros((3, 5)))

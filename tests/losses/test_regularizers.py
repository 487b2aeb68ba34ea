"""L2-SP, DELTA feature-map distance and LwF distillation against NumPy references."""

from __future__ import annotations

import jax
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
from tljax.losses.regularizers import delta_feature_loss, l2sp, lwf_distillation

RNG = np.random.default_rng(0)
PARAMS = {
    "backbone": {"conv": {"kernel": RNG.normal(size=(2, 3))}, "bn": {"scale": RNG.normal(size=3)}},
    "head": {"kernel": RNG.normal(size=(3, 2)), "bias": RNG.normal(size=2)},
}
INIT = jax.tree.map(lambda a: a + 0.3 * RNG.normal(size=a.shape), PARAMS)


def ref_l2sp(params, init, alpha, beta):
    shared = sum(np.sum((params["backbone"][m][k] - init["backbone"][m][k]) ** 2)
                 for m, k in (("conv", "kernel"), ("bn", "scale")))  # fmt: skip
    new = sum(np.sum(params["head"][k] ** 2) for k in ("kernel", "bias"))
    return alpha / 2 * shared + beta / 2 * new


MASKS = {
    "predicate": lambda path: path.startswith("backbone/"),
    "full_tree": {
        "backbone": {"conv": {"kernel": True}, "bn": {"scale": True}},
        "head": {"kernel": False, "bias": False},
    },  # fmt: skip
    "prefix": {"backbone": True, "head": False},
}


@pytest.mark.parametrize("mask", list(MASKS))
def test_l2sp_matches_reference(dtype, mask):
    cast = lambda t: jax.tree.map(lambda a: arr(a, dtype), t)  # noqa: E731
    fn = jitted(l2sp, alpha=0.1, beta=0.01, shared_mask=MASKS[mask])
    out = fn(cast(PARAMS), cast(INIT))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_l2sp(PARAMS, INIT, 0.1, 0.01), **tol(dtype))


def test_l2sp_gradient_is_analytic():
    grads = jit_grad(l2sp, argnums=(0, 1), alpha=0.1, beta=0.01, shared_mask=MASKS["prefix"])
    g, g_init = grads(PARAMS, INIT)
    for m, k in (("conv", "kernel"), ("bn", "scale")):
        expected = 0.1 * (PARAMS["backbone"][m][k] - INIT["backbone"][m][k])
        np.testing.assert_allclose(g["backbone"][m][k], expected, rtol=1e-5)
    for k in ("kernel", "bias"):
        np.testing.assert_allclose(g["head"][k], 0.01 * PARAMS["head"][k], rtol=1e-5)
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(g_init))  # w⁰ is a constant


def test_l2sp_on_nnx_state_paths():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.backbone = nnx.Linear(3, 2, rngs=rngs)
            self.head = nnx.Linear(2, 2, rngs=rngs)

    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)
    seen = []
    shared = lambda p: seen.append(p) or p.startswith("backbone/")  # noqa: E731
    init = jax.tree.map(np.zeros_like, state)
    out = jitted(l2sp, alpha=2.0, beta=0.0, shared_mask=shared)(state, init)
    assert sorted(seen) == ["backbone/bias", "backbone/kernel", "head/bias", "head/kernel"]
    backbone = [np.asarray(state["backbone"][k][...]) for k in ("kernel", "bias")]
    np.testing.assert_allclose(out, sum(np.sum(a**2) for a in backbone), rtol=1e-6)


def test_l2sp_errors():
    with pytest.raises(ValueError, match="tree structure of params"):
        l2sp(
            PARAMS, {"backbone": INIT["backbone"]}, alpha=1.0, beta=1.0, shared_mask=MASKS["prefix"]
        )
    with pytest.raises(ValueError, match="pytree of bools"):
        l2sp(PARAMS, INIT, alpha=1.0, beta=1.0, shared_mask={"backbone": True})
    with pytest.raises(ValueError, match=r"Python bools, got 1.*'head/bias'"):
        l2sp(PARAMS, INIT, alpha=1.0, beta=1.0, shared_mask={"backbone": True, "head": 1})


def ref_delta(f, f0, weights=None):
    b, h, w, c = f.shape
    total = 0.0
    for i in range(b):
        for k in range(c):
            dist2 = sum((f[i, y, x, k] - f0[i, y, x, k]) ** 2 for y in range(h) for x in range(w))
            total += dist2 if weights is None else c * weights[k] * dist2 / (h * w)
    return 0.5 * total


FMAP, FMAP0 = RNG.normal(size=(2, 3, 2, 4)), RNG.normal(size=(2, 3, 2, 4))
ATTN = softmax_rows(RNG.normal(size=(1, 4)))[0]


def test_delta_matches_reference(dtype):
    f, f0 = arr(FMAP, dtype), arr(FMAP0, dtype)
    plain = jitted(delta_feature_loss)(f, f0)
    assert plain.dtype == dtype
    np.testing.assert_allclose(plain, ref_delta(FMAP, FMAP0), **tol(dtype))
    attn = jitted(delta_feature_loss)(f, f0, arr(ATTN, dtype))
    np.testing.assert_allclose(attn, ref_delta(FMAP, FMAP0, ATTN), **tol(dtype))
    two = jitted(delta_feature_loss)([f, f], [f0, f0], [None, arr(ATTN, dtype)])
    np.testing.assert_allclose(
        two, ref_delta(FMAP, FMAP0) + ref_delta(FMAP, FMAP0, ATTN), **tol(dtype)
    )


def test_delta_gradient(x64):
    g, g0 = jit_grad(delta_feature_loss, argnums=(0, 1))(FMAP, FMAP0, ATTN)
    np.testing.assert_allclose(g, fd_grad(lambda f: ref_delta(f, FMAP0, ATTN), FMAP), **FD_TOL)
    assert np.all(g0 == 0)
    assert_finite_nonzero(g)
    with pytest.raises(ValueError, match=r"shape \(4,\).*got \(3,\)"):
        delta_feature_loss(FMAP, FMAP0, ATTN[:3])


def ref_lwf(new, old, temperature):
    p, q = softmax_rows(old / temperature), softmax_rows(new / temperature)
    return np.mean([sum(p[i] * np.log(p[i] / q[i])) for i in range(len(new))])


NEW, OLD = RNG.normal(size=(5, 3)) * 2, RNG.normal(size=(5, 3)) * 2


def test_lwf_matches_reference(dtype):
    out = jitted(lwf_distillation)(arr(NEW, dtype), arr(OLD, dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_lwf(NEW, OLD, 2.0), **tol(dtype))
    same = jitted(lwf_distillation)(arr(OLD, dtype), arr(OLD, dtype))
    assert abs(float(same)) < 1e-6


def test_lwf_gradient(x64):
    g_new, g_old = jit_grad(lwf_distillation, argnums=(0, 1), temperature=3.0)(NEW, OLD)
    np.testing.assert_allclose(g_new, fd_grad(lambda a: ref_lwf(a, OLD, 3.0), NEW), **FD_TOL)
    assert np.all(g_old == 0)
    assert_finite_nonzero(g_new)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        lwf_distillation(NEW, OLD, temperature=-1.0)

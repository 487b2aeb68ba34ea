"""CDAN's conditioning map and random matrices, MDD's sign convention."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tests.methods.helpers import random_batch, setup, subtree
from tljax import methods
from tljax.losses.mdd import mdd as mdd_loss
from tljax.methods import cdan
from tljax.methods.base import ModelInfo, Outputs


def _fl(seed=0, n=6, f=5, c=3):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (n, f)), jax.random.normal(k2, (n, c))


def test_cdan_map_detaches_the_softmax():
    f, z = _fl()
    rf, rg = (
        jax.random.normal(jax.random.key(1), (5, 7)),
        jax.random.normal(jax.random.key(2), (3, 7)),
    )
    for mats in ((None, None), (rf, rg)):
        fn = lambda f_, z_, mats=mats: jnp.sum(jnp.sin(cdan.conditioning_map(f_, z_, *mats)))
        g_f, g_z = jax.jit(jax.grad(fn, argnums=(0, 1)))(f, z)
        assert np.all(np.asarray(g_z) == 0.0)
        assert np.abs(np.asarray(g_f)).max() > 0


def test_cdan_full_map_below_threshold():
    s = setup("cdan", hparams=dict(hidden=(16,)))
    # feature_dim 8 x 4 classes = 32 <= 4096: full map, no random matrices.
    assert "rf" not in subtree(s.state.rest, "method/")
    assert subtree(s.state.params, "method/discriminator/linears/0/kernel")[
        "method/discriminator/linears/0/kernel"
    ].shape == (32, 16)


def test_cdan_randomized_matrices_are_fixed_state_not_parameters():
    hp = dict(
        hidden=(16,),
        randomized_threshold=0,
        randomized_dim=12,
        entropy_conditioning=True,
        grl_lo=1.0,
        grl_hi=1.0,
    )
    s = setup("cdan", hparams=hp)
    mats = subtree(s.state.rest, "method/r")
    assert {k: v.shape for k, v in mats.items()} == {"method/rf": (8, 12), "method/rg": (4, 12)}
    assert not any("/rf" in k or "/rg" in k for k in subtree(s.state.params, ""))
    step = jax.jit(s.step, donate_argnums=0)
    state = s.state
    for i in range(3):
        state, metrics = step(state, random_batch(seed=i))
    assert np.isfinite(float(metrics["loss"]))
    after = subtree(state.rest, "method/r")
    for k in mats:
        np.testing.assert_array_equal(mats[k], after[k])


def test_mdd_adversarial_head_ascends_the_disparity_and_features_descend_it():
    m = methods.get("mdd", width=8, dropout=0.0, grl_lo=1.0, grl_hi=1.0)
    head = m.init(nnx.Rngs(0), ModelInfo(feature_dim=5, num_classes=3))
    graphdef, params = nnx.split(head)
    f, z = _fl(n=12)
    src = Outputs(z[:6] * 3, f[:6], {})

    def loss(p, feats):
        tgt = Outputs(z[6:] * 3, feats, {})
        value, metrics = m.loss(nnx.merge(graphdef, p), src=src, tgt=tgt, rng=None, step=0)
        return value, metrics["disparity"]

    (value, disparity), (g_p, g_f) = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    )(params, f[6:])
    assert np.isclose(float(value), -float(disparity))
    stepped = jax.tree.map(lambda p, g: p - 0.1 * g, params, g_p)
    assert float(jax.jit(loss)(stepped, f[6:])[1]) > float(disparity)  # the head maximises D

    # Through the GRL the features get +coeff * dD/df: descending the total loss lowers D.
    def plain_disparity(feats):
        adv = nnx.merge(graphdef, params)
        ys_adv, yt_adv = adv(src.features), adv(feats)
        return mdd_loss(y_s=src.logits, y_s_adv=ys_adv, y_t=z[6:] * 3, y_t_adv=yt_adv, margin=4.0)

    np.testing.assert_allclose(
        np.asarray(g_f), np.asarray(jax.jit(jax.grad(plain_disparity))(f[6:])), rtol=1e-5, atol=1e-7
    )

"""SimCLR: the in-step augmentation, the loss against NT-Xent on the two views, and where
its gradient goes (backbone and projection yes; the probe's CE never reaches the backbone)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.inductive.helpers import batch, flat, setup
from tljax.losses.contrastive import nt_xent
from tljax.methods import simclr

STRONG = dict(min_scale=0.3, flip=True, jitter=0.4, noise_std=0.05)
augment = jax.jit(simclr.augment, static_argnames=tuple(STRONG))


def test_augment_is_a_seeded_per_image_transform():
    x = jnp.asarray(np.random.default_rng(0).random((4, 12, 12, 1), dtype=np.float32))
    a = augment(x, jax.random.key(1), **STRONG)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, augment(x, jax.random.key(1), **STRONG))
    assert not np.allclose(a, augment(x, jax.random.key(2), **STRONG))
    assert not np.allclose(a[0], a[1])
    # Crop + bilinear resize only: a convex combination of each image's pixels.
    geo = augment(x, jax.random.key(3), min_scale=0.3, flip=True, jitter=0.0, noise_std=0.0)
    lo, hi = x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))
    assert np.all(geo.min(axis=(1, 2, 3)) >= lo - 1e-6)
    assert np.all(geo.max(axis=(1, 2, 3)) <= hi + 1e-6)
    with pytest.raises(ValueError, match="NHWC"):
        simclr.augment(x[0], jax.random.key(0))


# The loss is compared with a separately compiled reference at 1e-5: full float32 matmuls
# and convolutions (GPUs default to TF32, ~1e-3). The routing check compares two calls of
# the step bitwise, which on a GPU needs XLA's deterministic ops (tests/conftest.py sets
# them): the crop's gather has a scatter-add gradient, summed with atomics otherwise.
@pytest.mark.usefixtures("highest_precision")
def test_loss_is_nt_xent_of_the_projected_views_and_gradients_go_where_they_should():
    s = setup("simclr", hparams=dict(temperature=0.5), pretrained_shift=None)
    b = batch(seed=0)
    rng = jax.random.key(42)
    new, m = s.step(s.state, b, rng)

    @jax.jit
    def reference(params, rest, xs):  # the two views and projections from the same rng
        k1, k2 = jax.random.split(rng)
        views = jnp.concatenate([augment(xs, k1), augment(xs, k2)], axis=0)
        net = nnx.merge(s.graphs.train_graph, params, rest)
        _, out = net.model(views)
        z = net.method(out["features"])
        return nt_xent(z[:8], z[8:], temperature=0.5)

    expected = reference(s.state.params, s.state.rest, b["source"]["image"])
    np.testing.assert_allclose(float(m["method_loss"]), float(expected), rtol=1e-5)
    before, after = flat(s.state.params), flat(new.params)
    for k in ("model/backbone/conv1/kernel", "method/hidden/kernel", "model/head/kernel"):
        assert not np.array_equal(before[k], after[k]), k
    # The online probe's cross-entropy is on detached features: other labels change the
    # head's update only (same compiled step, same views).
    relabelled = {**b, "source": {**b["source"], "label": (b["source"]["label"] + 1) % 10}}
    other = flat(s.step(s.state, relabelled, rng)[0].params)
    for k in after:
        same = np.array_equal(other[k], after[k])
        assert same != k.startswith("model/head/"), k

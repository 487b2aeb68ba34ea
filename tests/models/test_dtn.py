"""DTN (TLlib's SVHN → MNIST network) and LeNet's TLlib options: shapes, parameter counts
against PyTorch's layer formulas, dropout in training only, and a few training steps."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from tests.helpers import random_batch, tiny_setup
from tljax.models import backbone_names, get_backbone_factory


def _n_params(module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _torch_counts(layers) -> int:
    """Parameters of PyTorch's Conv2d(i, o, k) / Linear(i, o) / BatchNorm(o) layers."""
    total = 0
    for kind, *a in layers:
        if kind == "conv":
            i, o, k = a
            total += i * o * k * k + o
        elif kind == "linear":
            i, o = a
            total += i * o + o
        else:  # BatchNorm: weight and bias (running statistics are buffers)
            total += 2 * a[0]
    return total


def test_dtn_is_registered_with_tllib_shapes_and_parameter_count():
    assert "dtn" in backbone_names()
    model = get_backbone_factory("dtn")((32, 32, 3), rngs=nnx.Rngs(0))
    model.eval()
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert model.feature_dim == 512 and out["features"].shape == (2, 512)
    assert out["conv1"].shape == (2, 16, 16, 64)
    assert out["conv2"].shape == (2, 8, 8, 128)
    assert out["conv3"].shape == (2, 4, 4, 256)
    tllib = [
        ("conv", 3, 64, 5), ("bn", 64), ("conv", 64, 128, 5), ("bn", 128),
        ("conv", 128, 256, 5), ("bn", 256), ("linear", 256 * 4 * 4, 512), ("bn", 512),
    ]  # fmt: skip
    assert _n_params(model) == _torch_counts(tllib) == 3_128_832


def test_dtn_dropout_only_in_training_mode():
    model = get_backbone_factory("dtn")((32, 32, 3), rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    model.train()
    a, b = model(x)["features"], model(x)["features"]
    assert not np.allclose(a, b)  # fresh dropout masks per call
    model.eval()
    np.testing.assert_array_equal(model(x)["features"], model(x)["features"])
    # Dropout2d zeroes whole feature maps: a dropped channel is 0 at every position.
    model.train()
    conv3 = np.asarray(model(x)["conv3"])
    dead = (conv3 == 0).all(axis=(1, 2))
    assert dead.any() and not dead.all()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"widths": (8, 16)}, "three conv blocks"), ({"dropout": 1.0}, "dropout rates")],
)
def test_dtn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_backbone_factory("dtn")((32, 32, 3), rngs=nnx.Rngs(0), **kwargs)


def test_lenet_tllib_options_match_tllib_lenet():
    lenet = get_backbone_factory("lenet")
    model = lenet((28, 28, 1), rngs=nnx.Rngs(0), channels=(20, 50), fc_dim=500, dropout=0.5)
    tllib = [("conv", 1, 20, 5), ("conv", 20, 50, 5), ("linear", 50 * 4 * 4, 500)]
    assert _n_params(model) == _torch_counts(tllib)
    model.eval()
    assert model(np.zeros((3, 28, 28, 1), np.float32))["features"].shape == (3, 500)
    plain = lenet((28, 28, 1), rngs=nnx.Rngs(0), channels=(20, 50))
    assert plain.feature_dim == 800 and plain.fc is None and plain.conv2_drop is None


@pytest.mark.parametrize(
    "backbone, shape, kwargs",
    [("dtn", (32, 32, 3), {}),  # SVHN -> MNIST
     ("lenet", (28, 28, 1), {"channels": (20, 50), "fc_dim": 500, "dropout": 0.5})],  # M <-> U
)  # fmt: skip
def test_trains_a_few_steps(backbone, shape, kwargs):
    state, step, eval_fn, _ = tiny_setup(
        "dann", backbone=backbone, shape=shape, bottleneck_dim=32, lr=0.02, **kwargs
    )
    step = jax.jit(step, donate_argnums=0)
    batch = random_batch(n=8, shape=shape)
    losses = []
    for _ in range(8):
        state, metrics = step(state, batch)
        losses.append(float(metrics["task_loss"]))
    assert all(np.isfinite(losses)) and int(state.step) == 8
    assert np.mean(losses[-3:]) < losses[0]
    logits, feats = eval_fn(state.params, state.rest, batch["source"]["image"])
    assert logits.shape == (8, 4) and feats.shape == (8, 32)

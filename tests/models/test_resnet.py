"""ResNet architecture tests against an independent NumPy/lax reference (no torch needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.models.reference import (
    random_state_dict,
    resnet_block,
    resnet_forward,
    torchvision_resnet_shapes,
)
from tljax.models import get_backbone_factory
from tljax.models.resnet import BottleneckBlock, max_pool_3x3_s2, resnet18
from tljax.models.weights import load_torchvision_resnet, resnet_state_dict

# Compared with float64/NumPy/torch references at 1e-4: full float32 matmuls and
# convolutions (GPUs default to TF32, ~1e-3; tests/conftest.py).
pytestmark = pytest.mark.usefixtures("highest_precision")

# torchvision's parameter counts (weights + biases, fc with 1000 classes included).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
}


def _nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("arch", sorted(TORCHVISION_PARAMS))
def test_parameter_count_and_keys_match_torchvision(arch):
    factory = get_backbone_factory(arch)
    model = nnx.eval_shape(lambda: factory((224, 224, 3), rngs=nnx.Rngs(0), num_classes=1000))
    params = nnx.state(model, nnx.Param)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == TORCHVISION_PARAMS[arch]
    assert model.feature_dim == (512 if arch in ("resnet18", "resnet34") else 2048)


def test_state_dict_round_trip_all_keys_and_shapes():
    shapes = torchvision_resnet_shapes("resnet18")
    sd = random_state_dict(shapes, seed=1)
    model = resnet18((32, 32, 3), rngs=nnx.Rngs(0), num_classes=1000)
    load_torchvision_resnet(model, sd, include_head=True)
    back = resnet_state_dict(model)
    assert set(back) == set(shapes)
    for k, v in back.items():
        assert v.shape == shapes[k], k
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_eval_forward_matches_numpy_reference():
    """Stem (7×7/2, max-pool), BasicBlocks with downsampling, pooling and fc, eval mode."""
    sd = random_state_dict(torchvision_resnet_shapes("resnet18", num_classes=10), seed=2)
    model = resnet18((32, 32, 3), rngs=nnx.Rngs(0), num_classes=10)
    load_torchvision_resnet(model, sd, include_head=True)
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    graph, state = nnx.split(model)
    hash(graph)  # static under jax.jit
    out = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)  # one compile, not per op
    ref = resnet_forward(sd, _nchw(x), "resnet18")
    for name in ("layer1", "layer2", "layer3", "layer4"):
        np.testing.assert_allclose(_nchw(out[name]), ref[name], rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)


def test_small_input_stem_matches_reference():
    shapes = torchvision_resnet_shapes("resnet18", num_classes=None, stem=3)
    sd = random_state_dict(shapes, seed=3)
    model = resnet18((16, 16, 3), rngs=nnx.Rngs(0), small_input=True)
    load_torchvision_resnet(model, sd)
    model.eval()
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    out = nnx.jit(lambda m, x: m(x))(model, x)
    assert out["layer1"].shape == (2, 16, 16, 64) and out["layer4"].shape == (2, 2, 2, 512)
    ref = resnet_forward(sd, _nchw(x), "resnet18", small_input=True)
    np.testing.assert_allclose(out["features"], ref["features"], rtol=1e-4, atol=1e-4)
    assert "logits" not in out


def test_bottleneck_block_with_stride_matches_reference():
    """v1.5: the stride sits on the 3×3 conv; the 1×1 projection shortcut has it too."""
    block = BottleneckBlock(32, 16, stride=2, rngs=nnx.Rngs(0))
    shapes = {
        "conv1.weight": (16, 32, 1, 1),
        "conv2.weight": (16, 16, 3, 3),
        "conv3.weight": (64, 16, 1, 1),
        "downsample.0.weight": (64, 32, 1, 1),
    }
    for bn, c in (("bn1", 16), ("bn2", 16), ("bn3", 64), ("downsample.1", 64)):
        for s in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{s}"] = (c,)
    sd = random_state_dict(shapes, seed=4)
    load_torchvision_resnet(block, sd)
    block.eval()
    x = np.random.default_rng(2).standard_normal((2, 9, 9, 32)).astype(np.float32)
    y = block(jnp.asarray(x))
    assert y.shape == (2, 5, 5, 64)
    ref = resnet_block({f"b.{k}": v for k, v in sd.items()}, "b", _nchw(x), "bottleneck", 2)
    np.testing.assert_allclose(_nchw(y), ref, rtol=1e-4, atol=1e-4)


def test_train_mode_batch_norm_matches_torch_momentum():
    model = resnet18((16, 16, 3), rngs=nnx.Rngs(0), small_input=True)
    model.train()
    x = jnp.asarray(np.random.default_rng(3).standard_normal((4, 16, 16, 3)), jnp.float32)
    conv_out = np.asarray(model.conv1(x))
    y = model.bn1(jnp.asarray(conv_out))
    # torch: running = 0.9 * running + 0.1 * batch statistic (old mean 0, old var 1).
    expected = 0.1 * conv_out.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(model.bn1.mean[...], expected, rtol=1e-5, atol=1e-6)
    normed = (conv_out - conv_out.mean((0, 1, 2))) / np.sqrt(conv_out.var((0, 1, 2)) + 1e-5)
    np.testing.assert_allclose(y, normed, rtol=1e-4, atol=1e-4)


def test_gradient_through_stem_in_train_mode():
    """Max-pool and training-mode BatchNorm are differentiable under jax.jit.

    The loss reads ``layer1`` only, so XLA drops layers 2-4 and the test compiles quickly.
    """
    model = resnet18((32, 32, 3), rngs=nnx.Rngs(0))
    model.train()
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)  # as tljax.train does
    x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 32, 32, 3)), jnp.float32)

    def loss(p, r):
        return jnp.mean(nnx.merge(graph, p, r)(x)["layer1"] ** 2)

    grads = jax.jit(jax.grad(loss))(params, rest)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["conv1"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["layer1"][1]["bn2"]["scale"]).sum()) > 0


def test_max_pool_gradient_goes_to_window_maxima():
    x = np.random.default_rng(5).standard_normal((1, 5, 6, 2)).astype(np.float32)
    g = np.asarray(jax.grad(lambda t: max_pool_3x3_s2(t).sum())(jnp.asarray(x)))
    counts = np.zeros_like(x)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    for i in range(3):  # output rows of (5 + 2 - 3) // 2 + 1
        for j in range(3):
            for c in range(2):
                win = xp[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, c]
                a, b = np.unravel_index(np.argmax(win), win.shape)
                counts[0, 2 * i + a - 1, 2 * j + b - 1, c] += 1
    np.testing.assert_array_equal(g, counts)


def test_bad_arguments_raise():
    from tljax.models.resnet import ResNet

    with pytest.raises(ValueError, match="resnet50"):
        ResNet("resnet51", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="height, width, channels"):
        resnet18((32, 32), rngs=nnx.Rngs(0))


def test_imported_torchvision_weights_update_running_variance_as_pytorch(tmp_path):
    """With torchvision weights the running variance takes PyTorch's unbiased batch
    variance ``n/(n-1)·σ²``; built from scratch it keeps NNX's biased one."""
    from safetensors.numpy import save_file

    from tljax.models import pretrained

    path = str(tmp_path / "r18.safetensors")
    sd = random_state_dict(torchvision_resnet_shapes("resnet18"), seed=3)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}, path)
    kwargs = pretrained.backbone_kwargs("resnet18", {}, path)
    assert kwargs == {"bn_unbiased_running_var": True}
    assert pretrained.backbone_kwargs("resnet18", {"bn_unbiased_running_var": False}, path) == {
        "bn_unbiased_running_var": False
    }
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 32, 32, 3)), jnp.float32)
    for unbiased in (True, False):
        model = resnet18((32, 32, 3), rngs=nnx.Rngs(0), bn_unbiased_running_var=unbiased)
        pretrained.load(model, "resnet18", path)
        v0 = np.asarray(model.bn1.var[...], np.float64)
        y = np.asarray(model.conv1(x), np.float64)  # the input of bn1
        model.train()
        model(x)
        n = y.shape[0] * y.shape[1] * y.shape[2]
        var = y.var((0, 1, 2)) * (n / (n - 1) if unbiased else 1.0)
        np.testing.assert_allclose(model.bn1.var[...], 0.9 * v0 + 0.1 * var, rtol=1e-4)

"""``model.dtype=bfloat16`` is bfloat16 where the FLOPs are, by the lowered program.

The bf16 train step is lowered (not run) on the host and its StableHLO read: every
convolution, and every matmul of the backbone, bottleneck and classifier, must take
bfloat16 operands. The parts that stay float32 on purpose are named here: the domain
discriminator of the adversarial methods (it takes the features cast to float32 so the
reversed gradient and the logistic loss are computed in float32; a few small matmuls),
the losses, softmax/log-sum-exp, BatchNorm statistics and the optimizer.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bench_photos_synthetic, dann_digits_m
from experiments import bench
from tljax.loop import build
from tljax.models.norm import BatchNorm

_OPERANDS = r":\s*\((tensor<[^>]*>), (tensor<[^>]*>)\)"
DISC_WIDTH = 96  # a width no backbone layer has, to tell the discriminator's matmuls apart


def _ops(text: str, op: str) -> list[tuple[str, str]]:
    return re.findall(rf"stablehlo\.{op}\b.*?{_OPERANDS}", text)


def _elem(t: str) -> str:
    return t.rsplit("x", 1)[-1].rstrip(">")


def _lowered_text(config) -> str:
    parts = build(config)
    batch = bench.synthetic_batch(parts["task"], int(config.data.batch_size))
    return jax.jit(parts["train_step"], donate_argnums=0).lower(parts["state"], batch).as_text()


@pytest.fixture(scope="module", params=["resnet50", "lenet"])
def dann_bf16_text(request):
    if request.param == "resnet50":
        c = bench_photos_synthetic.get_config("batch=2,size=32,n=4")
    else:
        c = dann_digits_m.get_config()
        c.data.batch_size = 4
    c.method.hparams.hidden = (DISC_WIDTH, DISC_WIDTH)
    c.model.dtype = "bfloat16"
    return request.param, _lowered_text(c)


def test_every_convolution_takes_bf16(dann_bf16_text):
    arch, text = dann_bf16_text
    convs = _ops(text, "convolution")
    # ResNet-50: 53 convolutions, each with an input and a weight gradient (the stem's
    # input gradient is not needed); LeNet: 2 forward + 3 backward.
    assert len(convs) == {"resnet50": 158, "lenet": 5}[arch]
    bad = [c for c in convs if _elem(c[0]) != "bf16" or _elem(c[1]) != "bf16"]
    assert not bad, f"{len(bad)} of {len(convs)} convolutions take f32: {bad[:3]}"


def test_only_the_discriminator_matmuls_are_f32(dann_bf16_text):
    _, text = dann_bf16_text
    dots = _ops(text, "dot_general")
    f32 = [d for d in dots if "f32" in (_elem(d[0]), _elem(d[1]))]
    bf16 = [d for d in dots if _elem(d[0]) == _elem(d[1]) == "bf16"]
    assert bf16, "no bf16 matmul at all"
    assert len(f32) + len(bf16) == len(dots), dots
    # Every f32 matmul is one of the discriminator's (an operand DISC_WIDTH wide).
    strays = [d for d in f32 if not any(f"x{DISC_WIDTH}x" in t or f"<{DISC_WIDTH}x" in t
                                        for t in d)]  # fmt: skip
    assert not strays, strays


def test_source_only_step_has_no_f32_matmul_or_convolution():
    c = bench_photos_synthetic.get_config("batch=2,size=32,n=4,arch=resnet18,method=source_only")
    c.model.dtype = "bfloat16"
    text = _lowered_text(c)
    ops = _ops(text, "convolution") + _ops(text, "dot_general")
    assert ops and all(_elem(a) == _elem(b) == "bf16" for a, b in ops)


def test_float32_step_stays_float32():
    c = bench_photos_synthetic.get_config("batch=2,size=32,n=4,arch=resnet18")
    text = _lowered_text(c)
    ops = _ops(text, "convolution") + _ops(text, "dot_general")
    assert ops and all(_elem(a) == _elem(b) == "f32" for a, b in ops)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_keeps_dtype_and_matches_float64(train):
    """Output in the input's dtype; statistics and normalisation as a float64 NumPy BN."""
    from flax import nnx

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (8, 5, 5, 6))
    bn = BatchNorm(6, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    bn.scale[...] = jnp.asarray(rng.normal(1, 0.1, 6), jnp.float32)
    bn.bias[...] = jnp.asarray(rng.normal(0, 0.1, 6), jnp.float32)
    bn.mean[...] = jnp.asarray(rng.normal(0, 1, 6), jnp.float32)
    bn.var[...] = jnp.asarray(rng.uniform(0.5, 2, 6), jnp.float32)
    scale, bias = np.asarray(bn.scale[...], np.float64), np.asarray(bn.bias[...], np.float64)
    m0, v0 = np.asarray(bn.mean[...], np.float64), np.asarray(bn.var[...], np.float64)
    bn.train() if train else bn.eval()
    y32 = bn(jnp.asarray(x, jnp.float32))
    mu, var = (x.mean((0, 1, 2)), x.var((0, 1, 2))) if train else (m0, v0)
    want = (x - mu) / np.sqrt(var + 1e-5) * scale + bias
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y32), want, rtol=1e-5, atol=1e-5)
    if train:
        np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.9 * m0 + 0.1 * mu, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 * v0 + 0.1 * var, rtol=1e-5)
    ybf = bn(jnp.asarray(x, jnp.bfloat16))
    assert ybf.dtype == jnp.bfloat16
    assert bn.mean[...].dtype == bn.var[...].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ybf, np.float64), want, rtol=0.05, atol=0.05)


def test_unbiased_running_variance_as_pytorch():
    from flax import nnx

    x = np.random.default_rng(1).normal(0, 3, (4, 3, 3, 2))
    bn = BatchNorm(2, momentum=0.9, unbiased_running_var=True, rngs=nnx.Rngs(0))
    bn.train()
    bn(jnp.asarray(x, jnp.float32))
    n = 4 * 3 * 3
    want = 0.9 * 1.0 + 0.1 * x.var((0, 1, 2)) * n / (n - 1)  # torch: var(unbiased=True)
    np.testing.assert_allclose(np.asarray(bn.var[...]), want, rtol=1e-5)


def test_masked_statistics_match_numpy_over_the_kept_entries():
    """``mask`` leaves entries out of the batch statistics (as nnx.BatchNorm's)."""
    from flax import nnx

    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, (6, 3, 4))
    keep = rng.random((6, 3, 1)) > 0.4
    bn = BatchNorm(4, momentum=0.9, unbiased_running_var=True, rngs=nnx.Rngs(0))
    bn.train()
    y = bn(jnp.asarray(x, jnp.float32), mask=jnp.asarray(keep))
    kept = x[np.broadcast_to(keep, x.shape)].reshape(-1, 4)
    mu, var = kept.mean(0), kept.var(0)
    np.testing.assert_allclose(np.asarray(y), (x - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    n = kept.shape[0]
    np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)

"""ResNet-18/34/50/101 with torchvision's architecture (He et al., CVPR 2016).

The layers, their order, strides and paddings are those of ``torchvision.models.resnet``
(the "v1.5" variant: a Bottleneck block downsamples in its 3×3 convolution), so that
torchvision's ImageNet weights load one to one (:func:`tljax.models.weights.
load_torchvision_resnet`) and give the same outputs. Images are NHWC float32; PyTorch's
symmetric zero padding is written out explicitly (``padding=((p, p), (p, p))``) because
XLA's ``"SAME"`` pads asymmetrically for strided convolutions.

Parameter paths mirror torchvision's state-dict keys: ``conv1``, ``bn1``,
``layer1``..``layer4`` (lists of blocks, each with ``conv1``/``bn1``/``conv2``/``bn2``
[/``conv3``/``bn3``] and an optional ``downsample`` with ``conv`` and ``bn``) and ``fc``
(only when ``num_classes`` is given), e.g. ``layer1/0/conv1/kernel``.

BatchNorm uses eps 1e-5 and PyTorch's momentum 0.1 (NNX counts momentum the other way:
``momentum=0.9`` keeps 90% of the old running statistic). NNX updates the running variance
with the biased batch variance, PyTorch with the unbiased one (a factor ``n/(n-1)`` on the
update); ``bn_unbiased_running_var=True`` does as PyTorch, and is the default when
torchvision weights are imported (``config.model.pretrained``), so fine-tuning follows
PyTorch's statistics. BatchNorm keeps its input's dtype (:mod:`tljax.models.norm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.mixstyle import MixStyle, mixstyle_rngs
from tljax.models.norm import BatchNorm


def host_normal_init(stddev: Callable[[tuple[int, ...]], float]) -> Callable:
    """An untruncated normal initializer ``N(0, stddev(shape)^2)`` drawn on the host.

    With a concrete key it draws with NumPy (seeded from the key's data, so it is
    reproducible); under tracing (``jax.jit``, ``nnx.eval_shape``) it uses
    ``jax.random.normal``. Why: XLA's CPU backend takes ~1-3 s to compile the threefry
    sampler for each new parameter shape, which made building a ResNet-18 take ~20 s
    (ResNet-50 ~30 s) on CPU; drawing on the host costs no compilation.
    """

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        std = stddev(tuple(shape))
        if isinstance(key, jax.core.Tracer):
            return jax.random.normal(key, shape, dtype) * jnp.asarray(std, dtype)
        seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
        x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * std
        return jnp.asarray(x, dtype)

    return init


# torchvision's conv init: kaiming_normal_(mode="fan_out", nonlinearity="relu"), i.e. an
# untruncated normal with std sqrt(2 / (out_channels * kh * kw)); kernels are HWIO here.
_CONV_INIT = host_normal_init(lambda s: math.sqrt(2.0 / (s[0] * s[1] * s[3])))
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # = 1 - torch's momentum 0.1

# name -> (block type, blocks per stage), as in torchvision.
ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}


def conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, rngs: nnx.Rngs) -> nnx.Conv:
    """Bias-free ``kernel×kernel`` convolution padded like PyTorch (``kernel // 2``)."""
    p = kernel // 2
    return nnx.Conv(
        in_ch,
        out_ch,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        use_bias=False,
        kernel_init=_CONV_INIT,
        rngs=rngs,
    )


def batch_norm(features: int, *, rngs: nnx.Rngs, unbiased: bool = False) -> BatchNorm:
    """BatchNorm with PyTorch's defaults (eps 1e-5, momentum 0.1); ``unbiased``: PyTorch's
    unbiased running variance."""
    return BatchNorm(
        features,
        epsilon=BN_EPS,
        momentum=BN_MOMENTUM,
        unbiased_running_var=unbiased,
        rngs=rngs,
    )


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """3×3 max-pool, stride 2, padding 1 (with -inf, as PyTorch) on NHWC input."""
    # A Python-scalar -inf init lets JAX recognise reduce_window_max, which is differentiable.
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )


class Downsample(nnx.Module):
    """The projection shortcut: 1×1 conv with stride, then BatchNorm."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, rngs: nnx.Rngs):
        self.conv = conv(in_ch, out_ch, 1, stride=stride, rngs=rngs)
        self.bn = batch_norm(out_ch, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.conv(x))


class BasicBlock(nnx.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, rngs: nnx.Rngs):
        self.conv1 = conv(in_ch, planes, 3, stride=stride, rngs=rngs)
        self.bn1 = batch_norm(planes, rngs=rngs)
        self.conv2 = conv(planes, planes, 3, rngs=rngs)
        self.bn2 = batch_norm(planes, rngs=rngs)
        needs_proj = stride != 1 or in_ch != planes
        self.downsample = Downsample(in_ch, planes, stride, rngs=rngs) if needs_proj else None

    def __call__(self, x: jax.Array) -> jax.Array:
        identity = x if self.downsample is None else self.downsample(x)
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + identity)


class BottleneckBlock(nnx.Module):
    """1×1 → 3×3 (with the stride, "v1.5") → 1×1 ×4 convolutions (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, rngs: nnx.Rngs):
        out_ch = planes * self.expansion
        self.conv1 = conv(in_ch, planes, 1, rngs=rngs)
        self.bn1 = batch_norm(planes, rngs=rngs)
        self.conv2 = conv(planes, planes, 3, stride=stride, rngs=rngs)
        self.bn2 = batch_norm(planes, rngs=rngs)
        self.conv3 = conv(planes, out_ch, 1, rngs=rngs)
        self.bn3 = batch_norm(out_ch, rngs=rngs)
        needs_proj = stride != 1 or in_ch != out_ch
        self.downsample = Downsample(in_ch, out_ch, stride, rngs=rngs) if needs_proj else None

    def __call__(self, x: jax.Array) -> jax.Array:
        identity = x if self.downsample is None else self.downsample(x)
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return nnx.relu(y + identity)


class ResNet(nnx.Module):
    """A torchvision-compatible ResNet backbone.

    Calling it on NHWC images returns a dict with ``"features"`` (the globally average-pooled
    ``(n, feature_dim)`` vector), the stage outputs ``"layer1"``..``"layer4"`` (NHWC feature
    maps) and, when the model has an ImageNet head, ``"logits"``.

    Args:
      arch: one of :data:`ARCHS` (``"resnet18"``, ``"resnet34"``, ``"resnet50"``,
        ``"resnet101"``).
      in_channels: channels of the input images.
      num_classes: if given, adds the ``fc`` classification layer (1000 for ImageNet).
      small_input: CIFAR-style stem for 32×32 inputs: a 3×3 stride-1 first convolution and
        no max-pool (the stem then differs from torchvision's, so ``conv1`` cannot take
        ImageNet weights).
      remat: activation rematerialisation: ``"none"``, or ``"block"`` to keep only each
        residual block's input for the backward pass and recompute the block's inside
        (``nnx.remat``, i.e. ``jax.checkpoint`` with nothing saveable): less activation
        memory for about one more forward pass of compute. Set it from a config with
        ``--config.model.backbone_kwargs.remat=block``.
      bn_unbiased_running_var: BatchNorm updates its running variance with the unbiased
        batch variance, as PyTorch (default when torchvision weights are imported).
      mixstyle_layers: stages (``"layer1"``..``"layer4"``) after which a
        :class:`~tljax.models.mixstyle.MixStyle` layer re-styles the feature maps in
        training mode (the paper places it after the early stages, res1-res3, not after
        the last; e.g. ``("layer1", "layer2")``). Empty (the default) builds none:
        parameters and outputs are as without the option. The stage outputs in the
        returned dict are after MixStyle.
      mixstyle_p, mixstyle_alpha, mixstyle_mode: MixStyle's ``p``, ``alpha`` and ``mode``.
      rngs: NNX random streams for initialisation (and MixStyle's ``dropout`` stream).

    Raises:
      ValueError: for an unknown ``arch``, ``remat`` or MixStyle layer.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        *,
        in_channels: int = 3,
        num_classes: int | None = None,
        small_input: bool = False,
        remat: str = "none",
        bn_unbiased_running_var: bool = False,
        mixstyle_layers: tuple[str, ...] = (),
        mixstyle_p: float = 0.5,
        mixstyle_alpha: float = 0.1,
        mixstyle_mode: str = "random",
        rngs: nnx.Rngs,
    ):
        if arch not in ARCHS:
            raise ValueError(f"Unknown ResNet arch {arch!r}; valid archs: {sorted(ARCHS)}.")
        if remat not in REMAT:
            raise ValueError(f"Unknown ResNet remat {remat!r}; valid: {list(REMAT)}.")
        stage_names = ("layer1", "layer2", "layer3", "layer4")
        if set(mixstyle_layers) - set(stage_names):
            raise ValueError(
                f"Unknown ResNet mixstyle_layers {tuple(mixstyle_layers)}; valid: {stage_names}."
            )
        self.remat = remat
        kind, depths = ARCHS[arch]
        block = BasicBlock if kind == "basic" else BottleneckBlock
        self.arch = arch
        self.small_input = small_input
        if small_input:
            self.conv1 = conv(in_channels, 64, 3, rngs=rngs)
        else:
            self.conv1 = conv(in_channels, 64, 7, stride=2, rngs=rngs)
        self.bn1 = batch_norm(64, rngs=rngs)
        in_ch = 64
        stages = []
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_ch, planes, stride, rngs=rngs))
                in_ch = planes * block.expansion
            stages.append(nnx.List(blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = in_ch
        self.fc = nnx.Linear(in_ch, num_classes, rngs=rngs) if num_classes else None
        if bn_unbiased_running_var:
            for _, node in nnx.iter_graph(self):
                if isinstance(node, BatchNorm):
                    node.unbiased_running_var = True
        if mixstyle_layers:  # only built when asked for: the default network is unchanged
            ms_rngs = mixstyle_rngs(rngs)  # draws nothing: other inits stay as they are
            self.mixstyle = nnx.Dict(
                {
                    name: MixStyle(
                        p=mixstyle_p, alpha=mixstyle_alpha, mode=mixstyle_mode, rngs=ms_rngs
                    )
                    for name in stage_names
                    if name in mixstyle_layers
                }
            )

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"ResNet expects NHWC images (4 dims), got shape {x.shape}.")
        x = nnx.relu(self.bn1(self.conv1(x)))
        if not self.small_input:
            x = max_pool_3x3_s2(x)
        out = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            for blk in getattr(self, name):
                x = _call_block(blk, x) if self.remat == "block" else blk(x)
            if name in getattr(self, "mixstyle", {}):
                x = self.mixstyle[name](x)
            out[name] = x
        out["features"] = jnp.mean(x, axis=(1, 2))
        if self.fc is not None:
            out["logits"] = self.fc(out["features"])
        return out


REMAT = ("none", "block")


@nnx.remat
def _call_block(block: nnx.Module, x: jax.Array) -> jax.Array:
    """``block(x)`` whose inside is recomputed in the backward pass (its BatchNorm
    statistics are updated once: the recomputation is of the forward values only)."""
    return block(x)


def _factory(arch: str, feature_dim: int):
    """The registry's factory for ``arch`` (one signature for every depth)."""

    def factory(
        input_shape,
        *,
        rngs: nnx.Rngs,
        num_classes=None,
        small_input=False,
        remat="none",
        bn_unbiased_running_var=False,
        mixstyle_layers=(),
        mixstyle_p=0.5,
        mixstyle_alpha=0.1,
        mixstyle_mode="random",
    ) -> ResNet:
        if len(tuple(input_shape)) != 3:
            raise ValueError(
                f"{arch} needs input_shape (height, width, channels), got {tuple(input_shape)}."
            )
        return ResNet(
            arch,
            in_channels=int(input_shape[-1]),
            num_classes=num_classes,
            small_input=small_input,
            remat=remat,
            bn_unbiased_running_var=bn_unbiased_running_var,
            mixstyle_layers=tuple(mixstyle_layers),
            mixstyle_p=float(mixstyle_p),
            mixstyle_alpha=float(mixstyle_alpha),
            mixstyle_mode=mixstyle_mode,
            rngs=rngs,
        )

    factory.__name__ = factory.__qualname__ = arch
    factory.__doc__ = (
        f"{arch} ({feature_dim}-d features); the factory used by the model registry "
        "(keyword arguments as :class:`ResNet`'s)."
    )
    return factory


resnet18 = _factory("resnet18", 512)
resnet34 = _factory("resnet34", 512)
resnet50 = _factory("resnet50", 2048)
resnet101 = _factory("resnet101", 2048)


__all__ = [
    "ARCHS",
    "BasicBlock",
    "BottleneckBlock",
    "Downsample",
    "ResNet",
    "host_normal_init",
    "max_pool_3x3_s2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
]

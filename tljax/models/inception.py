"""Inception-v3 in torchvision's layout (Szegedy et al., CVPR 2016).

The blocks, their branches, kernel shapes, strides and paddings are those of
``torchvision.models.inception``, so torchvision's ImageNet weights load one to one
(:func:`load_torchvision_inception`). Every convolution is a ``BasicConv2d``: a bias-free
convolution, BatchNorm with eps 0.001 (PyTorch's momentum 0.1) and a ReLU; the average
pools inside the blocks count the zero padding (``count_include_pad=True``) as PyTorch.

Parameter paths mirror torchvision's keys: ``Conv2d_1a_3x3``, ``Conv2d_2a_3x3``,
``Conv2d_2b_3x3``, ``Conv2d_3b_1x1``, ``Conv2d_4a_3x3`` (each ``conv``/``bn``), the blocks
``Mixed_5b``..``Mixed_5d`` (InceptionA), ``Mixed_6a`` (B), ``Mixed_6b``..``Mixed_6e``
(C), ``Mixed_7a`` (D), ``Mixed_7b``/``Mixed_7c`` (E), each with its branches
(``Mixed_6b/branch7x7_2/conv/kernel``), the auxiliary head ``AuxLogits`` (``conv0``,
``conv1``, ``fc``) and the ImageNet head ``fc``.

Input size: 299×299 is the default; 75×75 is the smallest input the network takes (the
stride-2 reductions leave 1×1 maps before ``Mixed_7b`` at 75×75; torchvision's stated
minimum too). The auxiliary head needs ``Mixed_6e`` maps of at least 17×17, i.e. inputs of
at least 299×299.

Outputs: ``"features"`` (the 2048-d global average pool of ``Mixed_7c``), the NHWC block
outputs ``"Mixed_5d"`` (35×35×288 at 299), ``"Mixed_6e"`` (17×17×768) and ``"Mixed_7c"``
(8×8×2048), ``"logits"`` with ``num_classes``, and, in training mode with
``aux_logits=True``, ``"aux_logits"`` (as torchvision, the auxiliary head runs in training
only).

**Using the auxiliary logits.** The trainer hands every backbone output other than
``"features"`` to the method, split per domain: a method's loss reads
``src.extras["aux_logits"]`` (``(n, aux_classes)``, in the compute dtype: cast to float32
before a softmax), e.g. the torchvision recipe ``CE(logits, y) + 0.4 · CE(aux_logits, y)``.
Set ``model.backbone_kwargs.aux_logits=True`` and ``model.backbone_kwargs.aux_classes`` to
the task's number of classes; in evaluation mode the key is absent. The default step's
method loss does not see the labels, so a label-based auxiliary loss belongs in a method
with its own step (as ``tljax.methods._steps.finetune_step``).

``transform_input=True`` maps ImageNet-normalised images to the ``[-1, 1]`` range the
ported TensorFlow weights expect, channel by channel as torchvision
(``x·std/0.5 + (mean − 0.5)/0.5``); it is the default when torchvision weights are loaded
through ``config.model.pretrained``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.norm import BatchNorm
from tljax.models.resnet import BN_MOMENTUM, host_normal_init
from tljax.models.vgg import check_width, scaled_channels, torchvision_key
from tljax.models.weights import Target, _load

BN_EPS = 1e-3  # torchvision's BasicConv2d
MIN_SIZE = 75
AUX_MIN_SIZE = 299
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)


class BasicConv2d(nnx.Module):
    """Bias-free convolution → BatchNorm (eps 0.001) → ReLU.

    Initialised as torchvision: normal weights with std ``stddev`` (0.1; torchvision's
    truncation at ±2 is ≥ 20σ, i.e. none in practice).
    """

    def __init__(self, cin, cout, kernel, *, stride=1, padding=0, stddev=0.1, rngs: nnx.Rngs):
        (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
        self.conv = nnx.Conv(
            cin,
            cout,
            kernel_size=(kh, kw),
            strides=(stride, stride),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            kernel_init=host_normal_init(lambda s: stddev),
            rngs=rngs,
        )
        self.bn = BatchNorm(cout, epsilon=BN_EPS, momentum=BN_MOMENTUM, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.bn(self.conv(x)))


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """3×3 max-pool, stride 2, no padding (PyTorch's floor mode) on NHWC input."""
    # A Python-scalar -inf init lets JAX recognise reduce_window_max (differentiable).
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


def avg_pool(x: jax.Array, k: int, stride: int, pad: int) -> jax.Array:
    """``k×k`` average pool on NHWC input, zero padding counted (PyTorch's
    ``count_include_pad=True``): window sum / ``k²``."""
    p = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, stride, stride, 1), p)
    return s / jnp.asarray(k * k, x.dtype)


def _cat(*xs: jax.Array) -> jax.Array:
    return jnp.concatenate(xs, axis=-1)


def _channels(width: float):
    """The channel count of a published layer under the width multiplier ``width``."""
    return lambda n: scaled_channels(n, width)


class InceptionA(nnx.Module):
    """1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg-pool→1×1 (35×35 grid)."""

    def __init__(self, cin: int, pool_features: int, *, width: float = 1.0, rngs: nnx.Rngs):
        c = _channels(width)
        self.branch1x1 = BasicConv2d(cin, c(64), 1, rngs=rngs)
        self.branch5x5_1 = BasicConv2d(cin, c(48), 1, rngs=rngs)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv2d(cin, c(pool_features), 1, rngs=rngs)
        self.out_channels = c(64) + c(64) + c(96) + c(pool_features)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(avg_pool(x, 3, 1, 1)),
        )


class InceptionB(nnx.Module):
    """Grid reduction 35 → 17: 3×3/2 | 1×1→3×3→3×3/2 | max-pool/2."""

    def __init__(self, cin: int, *, width: float = 1.0, rngs: nnx.Rngs):
        c = _channels(width)
        self.branch3x3 = BasicConv2d(cin, c(384), 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, stride=2, rngs=rngs)
        self.out_channels = c(384) + c(96) + cin  # the max-pool passes cin through

    def __call__(self, x: jax.Array) -> jax.Array:
        return _cat(
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            max_pool_3x3_s2(x),
        )


class InceptionC(nnx.Module):
    """Factorised 7×7 convolutions (1×7 and 7×1) on the 17×17 grid."""

    def __init__(self, cin: int, channels_7x7: int, *, width: float = 1.0, rngs: nnx.Rngs):
        c = _channels(width)
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, c(192), 1, rngs=rngs)
        self.branch7x7_1 = BasicConv2d(cin, c(c7), 1, rngs=rngs)
        self.branch7x7_2 = BasicConv2d(c(c7), c(c7), (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = BasicConv2d(c(c7), c(192), (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = BasicConv2d(cin, c(c7), 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv2d(c(c7), c(c7), (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = BasicConv2d(c(c7), c(c7), (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = BasicConv2d(c(c7), c(c7), (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = BasicConv2d(c(c7), c(192), (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = BasicConv2d(cin, c(192), 1, rngs=rngs)
        self.out_channels = 4 * c(192)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3):
            d = conv(d)
        d = self.branch7x7dbl_5(self.branch7x7dbl_4(d))
        return _cat(self.branch1x1(x), s, d, self.branch_pool(avg_pool(x, 3, 1, 1)))


class InceptionD(nnx.Module):
    """Grid reduction 17 → 8: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max-pool/2."""

    def __init__(self, cin: int, *, width: float = 1.0, rngs: nnx.Rngs):
        c = _channels(width)
        self.branch3x3_1 = BasicConv2d(cin, c(192), 1, rngs=rngs)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv2d(cin, c(192), 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, stride=2, rngs=rngs)
        self.out_channels = c(320) + c(192) + cin

    def __call__(self, x: jax.Array) -> jax.Array:
        t = self.branch3x3_2(self.branch3x3_1(x))
        s = self.branch7x7x3_2(self.branch7x7x3_1(x))
        s = self.branch7x7x3_4(self.branch7x7x3_3(s))
        return _cat(t, s, max_pool_3x3_s2(x))


class InceptionE(nnx.Module):
    """Expanded filter banks (1×3 and 3×1 side by side) on the 8×8 grid."""

    def __init__(self, cin: int, *, width: float = 1.0, rngs: nnx.Rngs):
        c = _channels(width)
        self.branch1x1 = BasicConv2d(cin, c(320), 1, rngs=rngs)
        self.branch3x3_1 = BasicConv2d(cin, c(384), 1, rngs=rngs)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(448), 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv2d(cin, c(192), 1, rngs=rngs)
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def __call__(self, x: jax.Array) -> jax.Array:
        t = self.branch3x3_1(x)
        t = _cat(self.branch3x3_2a(t), self.branch3x3_2b(t))
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = _cat(self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d))
        return _cat(self.branch1x1(x), t, d, self.branch_pool(avg_pool(x, 3, 1, 1)))


class InceptionAux(nnx.Module):
    """The auxiliary classifier on ``Mixed_6e``: 5×5/3 avg-pool → 1×1 conv (128) → 5×5
    conv (768) → global average → linear."""

    def __init__(self, cin: int, num_classes: int, *, width: float = 1.0, rngs: nnx.Rngs):
        c = _channels(width)
        self.conv0 = BasicConv2d(cin, c(128), 1, rngs=rngs)
        self.conv1 = BasicConv2d(c(128), c(768), 5, stddev=0.01, rngs=rngs)
        self.fc = nnx.Linear(
            c(768),
            num_classes,
            kernel_init=host_normal_init(lambda s: 0.001),
            bias_init=nnx.initializers.zeros,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if min(x.shape[1:3]) < 17:
            raise ValueError(
                f"Inception-v3's auxiliary head needs Mixed_6e maps of at least 17x17 "
                f"(inputs of at least {AUX_MIN_SIZE}x{AUX_MIN_SIZE}), got "
                f"{x.shape[1]}x{x.shape[2]}; build the model with aux_logits=False or use "
                "larger images."
            )
        x = self.conv1(self.conv0(avg_pool(x, 5, 3, 0)))
        return self.fc(jnp.mean(x, axis=(1, 2)))


# (name, block type, constructor arguments after the input channels); the output channels
# (256, 288, 288, 768 ×5, 1280, 2048, 2048 at width 1) are each block's ``out_channels``.
_BLOCKS = (
    ("Mixed_5b", InceptionA, (32,)),
    ("Mixed_5c", InceptionA, (64,)),
    ("Mixed_5d", InceptionA, (64,)),
    ("Mixed_6a", InceptionB, ()),
    ("Mixed_6b", InceptionC, (128,)),
    ("Mixed_6c", InceptionC, (160,)),
    ("Mixed_6d", InceptionC, (160,)),
    ("Mixed_6e", InceptionC, (192,)),
    ("Mixed_7a", InceptionD, ()),
    ("Mixed_7b", InceptionE, ()),
    ("Mixed_7c", InceptionE, ()),
)
_EXPOSED = ("Mixed_5d", "Mixed_6e", "Mixed_7c")


class Inception3(nnx.Module):
    """A torchvision-compatible Inception-v3 backbone (outputs: see the module docstring).

    Args:
      in_channels: channels of the input images (3 for ImageNet weights).
      num_classes: if given, adds the ``fc`` classification layer (1000 for ImageNet).
      aux_logits: build the auxiliary head ``AuxLogits`` (run in training mode only).
      aux_classes: classes of the auxiliary head; defaults to ``num_classes``.
      transform_input: map ImageNet-normalised inputs to ``[-1, 1]`` first, as
        torchvision (needs 3 channels).
      dropout: rate of the dropout before ``fc`` and on ``"features"`` in training mode
        (torchvision: 0.5; it needs a ``dropout`` rng stream). ``0.0`` (the default) builds
        no dropout, which keeps the module free of RNG state for the functional trainer.
      bn_unbiased_running_var: BatchNorm updates its running variance with the unbiased
        batch variance, as PyTorch (default when torchvision weights are imported).
      width: channel multiplier of every convolution (``round(c·width)``, at least 1;
        the features are then ``feature_dim`` wide, 2048 at 1.0). Only 1.0 takes
        torchvision's weights; ``0.125`` (256-d features) trains on a CPU.
      rngs: NNX random streams for initialisation.

    Raises:
      ValueError: for ``aux_logits`` without a class count, ``transform_input`` with
        other than 3 channels, or a non-positive ``width``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int | None = None,
        aux_logits: bool = False,
        aux_classes: int | None = None,
        transform_input: bool = False,
        dropout: float = 0.0,
        bn_unbiased_running_var: bool = False,
        width: float = 1.0,
        rngs: nnx.Rngs,
    ):
        aux_classes = aux_classes or num_classes
        if aux_logits and not aux_classes:
            raise ValueError(
                "aux_logits=True needs the auxiliary head's class count: set aux_classes "
                "(e.g. the task's number of classes) or num_classes."
            )
        if transform_input and in_channels != 3:
            raise ValueError(
                f"transform_input=True needs RGB inputs (3 channels), got {in_channels}."
            )
        self.transform_input = transform_input
        self.width = w = check_width(width, "inception_v3")
        c = _channels(w)
        self.Conv2d_1a_3x3 = BasicConv2d(in_channels, c(32), 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3, rngs=rngs)
        cin = c(192)
        for name, block, args in _BLOCKS:
            setattr(self, name, block(cin, *args, width=w, rngs=rngs))
            cin = getattr(self, name).out_channels
            if name == "Mixed_6e":
                aux_in = cin
        self.AuxLogits = (
            InceptionAux(aux_in, aux_classes, width=w, rngs=rngs) if aux_logits else None
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.fc = (
            nnx.Linear(
                cin,
                num_classes,
                kernel_init=host_normal_init(lambda s: 0.1),
                bias_init=nnx.initializers.zeros,
                rngs=rngs,
            )
            if num_classes
            else None
        )
        self.feature_dim = cin  # 2048 at width 1
        self.deterministic = False  # set by .train()/.eval(): the aux head runs in training
        if bn_unbiased_running_var:
            for _, node in nnx.iter_graph(self):
                if isinstance(node, BatchNorm):
                    node.unbiased_running_var = True

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"Inception-v3 expects NHWC images (4 dims), got shape {x.shape}.")
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(
                f"Inception-v3 needs images of at least {MIN_SIZE}x{MIN_SIZE}, got "
                f"{x.shape[1]}x{x.shape[2]}."
            )
        if self.transform_input:
            scale = np.array(_IMAGENET_STD) / 0.5
            shift = (np.array(_IMAGENET_MEAN) - 0.5) / 0.5
            x = x * jnp.asarray(scale, x.dtype) + jnp.asarray(shift, x.dtype)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool_3x3_s2(x)
        x = max_pool_3x3_s2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        out = {}
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
            if name in _EXPOSED:
                out[name] = x
            if name == "Mixed_6e" and self.AuxLogits is not None and not self.deterministic:
                out["aux_logits"] = self.AuxLogits(x)
        feats = jnp.mean(x, axis=(1, 2))
        if self.dropout is not None:
            feats = self.dropout(feats)
        out["features"] = feats
        if self.fc is not None:
            out["logits"] = self.fc(feats)
        return out


def inception_v3(
    input_shape,
    *,
    rngs: nnx.Rngs,
    num_classes=None,
    aux_logits=False,
    aux_classes=None,
    transform_input=False,
    dropout=0.0,
    bn_unbiased_running_var=False,
    width=1.0,
) -> Inception3:
    """Inception-v3 (2048-d features); the factory used by the model registry (keyword
    arguments as :class:`Inception3`'s).

    Raises:
      ValueError: for an ``input_shape`` that is not ``(height, width, channels)`` or is
        smaller than 75×75 (or than 299×299 with ``aux_logits``).
    """
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"inception_v3 needs input_shape (height, width, channels), got {shape}.")
    least = AUX_MIN_SIZE if aux_logits else MIN_SIZE
    if min(shape[:2]) < least:
        raise ValueError(
            f"inception_v3 needs images of at least {least}x{least}"
            + (" with aux_logits=True (the auxiliary head's 5x5 convolution)" if aux_logits else "")
            + f", got input_shape {shape}."
        )
    return Inception3(
        in_channels=int(shape[-1]),
        num_classes=num_classes,
        aux_logits=aux_logits,
        aux_classes=aux_classes,
        transform_input=transform_input,
        dropout=dropout,
        bn_unbiased_running_var=bn_unbiased_running_var,
        width=width,
        rngs=rngs,
    )


def load_torchvision_inception(
    model: nnx.Module,
    state_dict: Mapping[str, np.ndarray],
    *,
    include_head: bool = False,
) -> None:
    """Loads a torchvision Inception-v3 state dict into an :class:`Inception3` (in place).

    Conv kernels go OIHW → HWIO, linear weights are transposed, BatchNorm
    ``running_mean``/``running_var`` go to the ``mean``/``var`` batch statistics.
    torchvision's ImageNet file always holds the auxiliary head (``AuxLogits.*``); for a
    model built without it, those keys are dropped.

    Args:
      model: the Inception3 (e.g. ``inception_v3((299, 299, 3), rngs=...)``, or a
        ``Classifier``'s ``.backbone``).
      state_dict: torchvision keys → arrays (see :func:`tljax.models.weights.
        read_state_dict`).
      include_head: load ``fc`` and ``AuxLogits.fc`` too (the model must have been built
        with the same class counts); ``False`` drops them from the state dict and leaves
        the model's own heads (if any) as initialised.

    Raises:
      ValueError: if keys are missing, unexpected or mis-shaped (all listed), if
        ``include_head`` is set on a model without ``fc``, or if ``model`` is not an
        Inception3.
    """
    if not isinstance(model, Inception3):
        raise ValueError(
            f"load_torchvision_inception needs the Inception3 module itself, got a "
            f"{type(model).__name__}; for a Classifier pass classifier.backbone."
        )
    if model.width != 1.0:
        raise ValueError(
            f"torchvision's Inception-v3 weights fit width=1.0 only; this model was built "
            f"with width={model.width:g}."
        )
    if include_head and model.fc is None:
        raise ValueError(
            "include_head=True but the model has no fc head; build it with num_classes "
            "(1000 for ImageNet) or pass include_head=False."
        )
    drop = () if include_head else ("fc.", "AuxLogits.fc.")
    drop += ("AuxLogits.",) if model.AuxLogits is None else ()
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(drop)}

    def target(path: tuple) -> Target:
        names = tuple(map(str, path))
        if not include_head and (names[0] == "fc" or names[:2] == ("AuxLogits", "fc")):
            return None
        return torchvision_key(path)

    _load(model, state_dict, target, "torchvision Inception-v3")


__all__ = [
    "BasicConv2d",
    "Inception3",
    "InceptionA",
    "InceptionAux",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "avg_pool",
    "inception_v3",
    "load_torchvision_inception",
    "max_pool_3x3_s2",
]

"""VGG-11/13/16/19, with and without BatchNorm, in torchvision's layout (Simonyan &
Zisserman, ICLR 2015).

The layers, their order and their indices are those of ``torchvision.models.vgg``, so
torchvision's ImageNet weights load one to one (:func:`load_torchvision_vgg`):

* ``features``: a list with torchvision's ``nn.Sequential`` indices. 3×3 convolutions
  (padding 1, with bias), each followed by a BatchNorm in the ``_bn`` variants and a ReLU,
  and a 2×2/2 max-pool after each of the five stages. Parameter-free layers (ReLU,
  max-pool) are ``None`` entries, so ``features/N/kernel`` is torchvision's
  ``features.N.weight``.
* an adaptive average pool to 7×7 (PyTorch's ``AdaptiveAvgPool2d`` windows), flattened in
  PyTorch's NCHW order;
* ``classifier``: ``Linear(25088, 4096) → ReLU → Dropout → Linear(4096, 4096) → ReLU →
  Dropout`` (indices 0 and 3) and the ImageNet head ``classifier/6`` when ``num_classes``
  is given.

Small images (e.g. 32×32 CIFAR-size inputs, the smallest a VGG takes: five 2×2 pools) work
as they are: the 1×1 map left after the last pool is spread over the 7×7 grid by the
adaptive pool, exactly as in PyTorch. ``fc_stack=False`` drops the two 4096-wide layers
(120M of VGG-16's 138M parameters) and takes the global average of the last max-pool's
output instead: 512-d features, the usual choice for small images.

``width`` scales every convolution's channel count (``round(c·width)``, at least 1), as a
width multiplier: ``width=0.125`` is VGG-11's 8-16-32-32-64-64-64-64 channels and 64-d
global-pool features, a network the 2-core CPU trains (``configs/zoo.py``'s
``vgg11_bn_slim``). Only ``width=1`` takes torchvision's weights.

Parameter paths: ``features/<i>/{kernel,bias}`` (convolutions), ``features/<i>/{scale,
bias}`` (BatchNorm; running statistics ``mean``/``var``), ``classifier/{0,3,6}/{kernel,
bias}``. The call returns ``"features"`` (the second 4096-wide layer's output after its
ReLU and dropout, i.e. ``classifier[:6]`` of torchvision, or the 512-d global pool without
the FC stack), the stage outputs ``"pool1"``..``"pool5"`` (NHWC, after each max-pool) and,
with ``num_classes``, ``"logits"``.

Mixed precision: cast the parameters and the images to bfloat16 (``model.dtype``); every
convolution and matmul then runs in bfloat16 and the activations stay bfloat16
(:class:`tljax.models.norm.BatchNorm` keeps its input's dtype).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.errors import as_float
from tljax.models.lenet import max_pool_2x2
from tljax.models.norm import BatchNorm
from tljax.models.resnet import BN_EPS, BN_MOMENTUM, host_normal_init
from tljax.models.weights import Target, _hwio, _load, _same

# torchvision's configurations: output channels of each 3×3 convolution, "M" = max-pool.
_CFG_TEXT = {
    "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}
CFGS: dict[str, tuple[int | str, ...]] = {
    k: tuple(v if v == "M" else int(v) for v in text.split()) for k, text in _CFG_TEXT.items()
}
POOL_SIZE = 7  # torchvision's AdaptiveAvgPool2d((7, 7))
MIN_SIZE = 32  # five 2×2 max-pools

# torchvision's init: convs kaiming_normal_(fan_out, relu) with zero bias (kernels are HWIO
# here), linears N(0, 0.01) with zero bias.
_CONV_INIT = host_normal_init(lambda s: math.sqrt(2.0 / (s[0] * s[1] * s[3])))
_LINEAR_INIT = host_normal_init(lambda s: 0.01)


def scaled_channels(n: int, width: float) -> int:
    """``n`` channels under the width multiplier ``width``: ``round(n·width)``, at least 1."""
    return max(1, int(round(n * width)))


def check_width(width, name: str) -> float:
    """``width`` as a positive float, or a ValueError naming ``name``'s valid range."""
    w = as_float(width)
    if not (w > 0 and math.isfinite(w)):
        raise ValueError(
            f"{name}: width must be a positive channel multiplier (1.0 = the published "
            f"network, e.g. 0.125 for an eighth of its channels), got {width!r}."
        )
    return w


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """PyTorch's ``AdaptiveAvgPool2d((size, size))`` on NHWC input.

    Output cell ``i`` averages input rows ``floor(i·H/size)`` to ``ceil((i+1)·H/size) - 1``
    (and likewise for columns); the windows overlap when ``H`` is not a multiple of
    ``size``, and an input smaller than ``size`` is spread (repeated) over the grid.
    Written as two small averaging matrices so that it is one contraction per axis.
    """

    def matrix(n: int) -> np.ndarray:
        m = np.zeros((size, n), np.float32)
        for i in range(size):
            lo, hi = (i * n) // size, -((-(i + 1) * n) // size)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return m

    n, h, w, c = x.shape
    if h == size and w == size:
        return x
    mh, mw = jnp.asarray(matrix(h), x.dtype), jnp.asarray(matrix(w), x.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", mh, x, mw)


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    return nnx.Dropout(rate, rngs=rngs) if rate > 0 else None


class VGG(nnx.Module):
    """A torchvision-compatible VGG backbone (see the module docstring for its outputs).

    Args:
      arch: one of :data:`CFGS` (``"vgg11"``, ``"vgg13"``, ``"vgg16"``, ``"vgg19"``).
      batch_norm: the ``_bn`` variant (BatchNorm after every convolution).
      in_channels: channels of the input images.
      num_classes: if given, adds the ImageNet-style head ``classifier/6`` (1000 for
        ImageNet); needs ``fc_stack``.
      fc_stack: keep torchvision's ``7×7 pool → fc → fc`` classifier; ``False`` gives
        512-d globally average-pooled features instead (for small images; the
        ``classifier.*`` weights of a torchvision file are then not used).
      fc_dim: width of the two hidden FC layers (4096 in torchvision; only 4096 takes
        ImageNet weights for them).
      width: channel multiplier of every convolution (1.0: torchvision's; only 1.0 takes
        its weights).
      dropout: rate of the two dropouts of the FC stack in training mode (torchvision:
        0.5; it needs a ``dropout`` rng stream). ``0.0`` (the default) builds no dropout,
        which keeps the module free of RNG state for the functional trainer.
      bn_unbiased_running_var: BatchNorm updates its running variance with the unbiased
        batch variance, as PyTorch (ignored without BatchNorm).
      rngs: NNX random streams for initialisation.

    Raises:
      ValueError: for an unknown ``arch``, ``num_classes`` without ``fc_stack``, a
        non-positive ``fc_dim`` or ``width``.
    """

    def __init__(
        self,
        arch: str = "vgg16",
        *,
        batch_norm: bool = False,
        in_channels: int = 3,
        num_classes: int | None = None,
        fc_stack: bool = True,
        fc_dim: int = 4096,
        dropout: float = 0.0,
        bn_unbiased_running_var: bool = False,
        width: float = 1.0,
        rngs: nnx.Rngs,
    ):
        if arch not in CFGS:
            raise ValueError(f"Unknown VGG arch {arch!r}; valid archs: {sorted(CFGS)}.")
        if num_classes and not fc_stack:
            raise ValueError(
                f"num_classes={num_classes} needs fc_stack=True (the head is classifier.6 "
                "after the FC stack); with fc_stack=False a Classifier adds the head."
            )
        if int(fc_dim) <= 0:
            raise ValueError(f"fc_dim must be a positive width, got {fc_dim!r}.")
        self.width = check_width(width, arch + "_bn" * bool(batch_norm))
        self.arch, self.batch_norm, self.fc_stack = arch, batch_norm, fc_stack
        layers, kinds, cin = [], [], in_channels
        for v in CFGS[arch]:
            if v == "M":
                layers.append(None)
                kinds.append("pool")
                continue
            v = scaled_channels(v, self.width)
            layers.append(
                nnx.Conv(
                    cin,
                    v,
                    kernel_size=(3, 3),
                    padding=((1, 1), (1, 1)),
                    kernel_init=_CONV_INIT,
                    bias_init=nnx.initializers.zeros,
                    rngs=rngs,
                )
            )
            kinds.append("conv")
            if batch_norm:
                layers.append(
                    BatchNorm(
                        v,
                        epsilon=BN_EPS,
                        momentum=BN_MOMENTUM,
                        unbiased_running_var=bn_unbiased_running_var,
                        rngs=rngs,
                    )
                )
                kinds.append("bn")
            layers.append(None)
            kinds.append("relu")
            cin = v
        self.features = nnx.List(layers)
        self.kinds = tuple(kinds)  # static: hashable in the graph definition
        if fc_stack:

            def linear(i: int, o: int) -> nnx.Linear:
                return nnx.Linear(
                    i, o, kernel_init=_LINEAR_INIT, bias_init=nnx.initializers.zeros, rngs=rngs
                )

            head = linear(fc_dim, num_classes) if num_classes else None
            flat = cin * POOL_SIZE * POOL_SIZE
            self.classifier = nnx.List(
                [linear(flat, fc_dim), None, _dropout(dropout, rngs)]
                + [linear(fc_dim, fc_dim), None, _dropout(dropout, rngs)]
                + ([head] if head is not None else [])
            )
            self.feature_dim = int(fc_dim)
        else:
            self.classifier = None
            self.feature_dim = cin

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if x.ndim != 4:
            raise ValueError(f"VGG expects NHWC images (4 dims), got shape {x.shape}.")
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(
                f"VGG needs images of at least {MIN_SIZE}x{MIN_SIZE} (five 2x2 max-pools), "
                f"got {x.shape[1]}x{x.shape[2]}."
            )
        out, stage = {}, 0
        for kind, layer in zip(self.kinds, self.features):
            if kind == "relu":
                x = nnx.relu(x)
            elif kind == "pool":
                x = max_pool_2x2(x)
                stage += 1
                out[f"pool{stage}"] = x
            else:
                x = layer(x)
        if self.classifier is None:
            out["features"] = jnp.mean(x, axis=(1, 2))
            return out
        x = adaptive_avg_pool(x, POOL_SIZE)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch.flatten of NCHW
        for i in (0, 3):
            x = nnx.relu(self.classifier[i](x))
            if self.classifier[i + 2] is not None:
                x = self.classifier[i + 2](x)
        out["features"] = x
        if len(self.classifier) > 6:
            out["logits"] = self.classifier[6](x)
        return out


def _factory(arch: str, batch_norm: bool):
    """The registry's factory for ``arch`` (one signature for every variant)."""
    name = arch + ("_bn" if batch_norm else "")

    def factory(
        input_shape,
        *,
        rngs: nnx.Rngs,
        num_classes=None,
        fc_stack=True,
        fc_dim=4096,
        dropout=0.0,
        bn_unbiased_running_var=False,
        width=1.0,
    ) -> VGG:
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name} needs input_shape (height, width, channels), got {shape}.")
        if min(shape[:2]) < MIN_SIZE:
            raise ValueError(
                f"{name} needs images of at least {MIN_SIZE}x{MIN_SIZE} (five 2x2 "
                f"max-pools), got input_shape {shape}."
            )
        return VGG(
            arch,
            batch_norm=batch_norm,
            in_channels=int(shape[-1]),
            num_classes=num_classes,
            fc_stack=fc_stack,
            fc_dim=fc_dim,
            dropout=dropout,
            bn_unbiased_running_var=bn_unbiased_running_var,
            width=width,
            rngs=rngs,
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"{name}; the factory used by the model registry (keyword arguments as :class:`VGG`'s)."
    )
    return factory


vgg11, vgg11_bn = _factory("vgg11", False), _factory("vgg11", True)
vgg13, vgg13_bn = _factory("vgg13", False), _factory("vgg13", True)
vgg16, vgg16_bn = _factory("vgg16", False), _factory("vgg16", True)
vgg19, vgg19_bn = _factory("vgg19", False), _factory("vgg19", True)

_LEAF = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _kernel(w: np.ndarray) -> np.ndarray:
    """A torch weight in our layout: conv OIHW → HWIO, linear ``(out, in)`` transposed."""
    return _hwio(w) if w.ndim == 4 else np.transpose(w)


def torchvision_key(path: tuple) -> Target:
    """A model variable's torchvision key and the conversion of the torch array to ours.

    The rule is generic (the path joined with dots; ``kernel``/``scale`` → ``weight``,
    ``mean``/``var`` → ``running_mean``/``running_var``): ``features/3/kernel`` →
    ``features.3.weight`` (OIHW → HWIO), ``classifier/0/kernel`` → ``classifier.0.weight``
    (transposed), ``Mixed_5b/branch1x1/bn/var`` → ``Mixed_5b.branch1x1.bn.running_var``.
    """
    *mods, leaf = (str(p) for p in path)
    prefix = ".".join(mods)
    if leaf == "kernel":
        return f"{prefix}.weight", _kernel
    return f"{prefix}.{_LEAF[leaf]}", _same


def torch_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """The inverse of :func:`load_torchvision_vgg` (and of
    :func:`tljax.models.inception.load_torchvision_inception`): the module's parameters and
    BatchNorm statistics under torchvision's keys and layouts, with BatchNorm's
    ``num_batches_tracked`` (0). Useful to export to PyTorch and to test the key mapping.
    """
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    out = {}
    for path, var in nnx.to_flat_state(state):
        key, _ = torchvision_key(path)
        a = np.asarray(var.get_value())
        if str(path[-1]) == "kernel":
            a = np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a.T
        out[key] = a
        if str(path[-1]) == "var":
            out[key.rsplit(".", 1)[0] + ".num_batches_tracked"] = np.zeros((), np.int64)
    return out


def load_torchvision_vgg(
    model: nnx.Module,
    state_dict: Mapping[str, np.ndarray],
    *,
    include_head: bool = False,
) -> None:
    """Loads a torchvision VGG state dict into a :class:`VGG` (in place).

    Conv kernels go OIHW → HWIO, linear weights are transposed, BatchNorm
    ``running_mean``/``running_var`` go to the ``mean``/``var`` batch statistics. The
    ``_bn`` and plain variants have different ``features`` indices, so a file of the other
    variant fails with the keys listed.

    Args:
      model: the VGG (e.g. ``vgg16_bn((224, 224, 3), rngs=...)``, or a ``Classifier``'s
        ``.backbone``).
      state_dict: torchvision keys → arrays (see :func:`tljax.models.weights.
        read_state_dict`).
      include_head: load ``classifier.6`` (the ImageNet head) too; the model must have
        been built with the same ``num_classes``. ``False`` drops the state dict's
        ``classifier.6.*`` and leaves the model's own head (if any) as initialised. A model
        built with ``fc_stack=False`` takes the convolutions only: every
        ``classifier.*`` key is dropped.

    Raises:
      ValueError: if keys are missing, unexpected or mis-shaped (all listed; e.g. a
        ``fc_dim`` other than the file's), if ``include_head`` is set on a model without
        ``classifier/6``, or if ``model`` is not a VGG.
    """
    if not isinstance(model, VGG):
        raise ValueError(
            f"load_torchvision_vgg needs the VGG module itself, got a "
            f"{type(model).__name__}; for a Classifier pass classifier.backbone."
        )
    if model.width != 1.0:
        raise ValueError(
            f"torchvision's VGG weights fit width=1.0 only; this model was built with "
            f"width={model.width:g}."
        )
    has_head = model.classifier is not None and len(model.classifier) > 6
    if include_head and not has_head:
        raise ValueError(
            "include_head=True but the model has no classifier.6 head; build it with "
            "num_classes (1000 for ImageNet) and fc_stack=True, or pass include_head=False."
        )
    drop = ("classifier.",) if model.classifier is None else ()
    drop += () if include_head else ("classifier.6.",)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(drop)}

    def target(path: tuple) -> Target:
        if not include_head and tuple(map(str, path[:2])) == ("classifier", "6"):
            return None
        return torchvision_key(path)

    _load(model, state_dict, target, f"torchvision {model.arch}{'_bn' * model.batch_norm}")


__all__ = [
    "CFGS",
    "VGG",
    "adaptive_avg_pool",
    "check_width",
    "load_torchvision_vgg",
    "scaled_channels",
    "torch_state_dict",
    "torchvision_key",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

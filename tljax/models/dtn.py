"""DTN: the digit network of the SVHN → MNIST protocol at 32×32×3.

The architecture of TLlib's ``DTN`` (``tllib/vision/models/digits.py`` in
thuml/Transfer-Learning-Library, used by its digits scripts ``-a dtn`` for SVHN → MNIST;
it goes back to the "domain transfer network" digit encoder of Taigman et al., ICLR 2017,
also used by ADDA-style reproductions)::

    conv 5×5, 64, stride 2, pad 2  → BatchNorm → Dropout2d(0.1) → ReLU     32 → 16
    conv 5×5, 128, stride 2, pad 2 → BatchNorm → Dropout2d(0.3) → ReLU     16 → 8
    conv 5×5, 256, stride 2, pad 2 → BatchNorm → Dropout2d(0.5) → ReLU      8 → 4
    flatten (4·4·256 = 4096) → Linear 512 → BatchNorm → ReLU → Dropout(0.5)

so ``feature_dim`` is 512 and TLlib puts the 256-d bottleneck and the head on top.
``Dropout2d`` drops whole feature maps (NNX ``Dropout`` broadcast over height and width).
BatchNorm uses PyTorch's eps 1e-5 and momentum 0.1 (NNX ``momentum=0.9``). Weights and
biases start as in PyTorch (``U(±1/sqrt(fan_in))``, drawn on the host: XLA:CPU would
otherwise compile a sampler per parameter shape, ~10 s for this network); nothing is
pretrained (``--scratch``). Other input sizes work too: each stride-2 convolution maps
``s`` to ``ceil(s / 2)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.norm import BatchNorm

BN_MOMENTUM = 0.9  # = 1 - PyTorch's momentum 0.1
BN_EPS = 1e-5


def torch_uniform_init(fan_in: int):
    """PyTorch's default Conv/Linear init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    (``kaiming_uniform_(a=sqrt(5))`` for weights, the same bound for biases), drawn with
    NumPy from the key's data when the key is concrete (``jax.random`` under tracing)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        if isinstance(key, jax.core.Tracer):
            return jax.random.uniform(key, shape, dtype, -bound, bound)
        seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
        x = np.random.default_rng(seed).uniform(-bound, bound, shape).astype(np.float32)
        return jnp.asarray(x, dtype)

    return init


def _init(fan_in: int) -> dict:
    init = torch_uniform_init(fan_in)
    return dict(kernel_init=init, bias_init=init)


class DTN(nnx.Module):
    """Three strided conv blocks and a 512-wide fully connected layer.

    Returns ``{"features": (n, 512), "conv1", "conv2", "conv3"}`` (the conv blocks'
    activations, NHWC).

    Args:
      input_shape: ``(height, width, channels)`` of one example (the protocol: 32×32×3).
      widths: output channels of the three convolutions.
      feature_dim: width of the fully connected layer (the features).
      conv_dropout: channel-dropout rates after the three convolutions (0 = none).
      dropout: dropout rate on the features (0 = none).
      rngs: NNX random streams (initialisation and dropout).
    """

    def __init__(
        self,
        input_shape,
        *,
        widths=(64, 128, 256),
        feature_dim: int = 512,
        conv_dropout=(0.1, 0.3, 0.5),
        dropout: float = 0.5,
        rngs: nnx.Rngs,
    ):
        h, w, c = input_shape
        if len(widths) != 3 or len(conv_dropout) != 3:
            raise ValueError(
                f"DTN has three conv blocks: widths={widths!r} and conv_dropout="
                f"{conv_dropout!r} must have 3 entries each."
            )
        for rate in (*conv_dropout, dropout):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"DTN dropout rates must be in [0, 1), got {rate!r}.")
        convs, norms, drops = [], [], []
        for width, rate in zip(widths, conv_dropout):
            convs.append(
                nnx.Conv(c, width, kernel_size=(5, 5), strides=(2, 2),
                         padding=((2, 2), (2, 2)), **_init(25 * c), rngs=rngs)
            )  # fmt: skip
            norms.append(BatchNorm(width, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs))
            drops.append(nnx.Dropout(rate, broadcast_dims=(1, 2), rngs=rngs))
            c = width
            h, w = (h + 1) // 2, (w + 1) // 2
        self.convs, self.norms, self.conv_drops = nnx.List(convs), nnx.List(norms), nnx.List(drops)
        self.fc = nnx.Linear(h * w * c, feature_dim, **_init(h * w * c), rngs=rngs)
        self.fc_norm = BatchNorm(feature_dim, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs)
        self.fc_drop = nnx.Dropout(dropout, rngs=rngs)
        self.feature_dim = feature_dim

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        out = {}
        for i, (conv, norm, drop) in enumerate(zip(self.convs, self.norms, self.conv_drops)):
            x = nnx.relu(drop(norm(conv(x))))
            out[f"conv{i + 1}"] = x
        f = self.fc(x.reshape(x.shape[0], -1))
        out["features"] = self.fc_drop(nnx.relu(self.fc_norm(f)))
        return out


def dtn(
    input_shape,
    *,
    rngs: nnx.Rngs,
    widths=(64, 128, 256),
    feature_dim: int = 512,
    conv_dropout=(0.1, 0.3, 0.5),
    dropout: float = 0.5,
) -> DTN:
    """Factory used by the model registry."""
    return DTN(
        tuple(input_shape),
        widths=tuple(widths),
        feature_dim=int(feature_dim),
        conv_dropout=tuple(conv_dropout),
        dropout=float(dropout),
        rngs=rngs,
    )


__all__ = ["DTN", "dtn"]

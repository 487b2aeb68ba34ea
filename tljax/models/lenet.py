"""Small convolutional backbones for digits.

``LeNet`` with its defaults is the network of the DANN paper's digit experiments
(Ganin et al., JMLR 2016): conv 5×5×32 → max-pool 2 → conv 5×5×48 → max-pool 2 →
flatten (768-d for 28×28 inputs). ``channels=(20, 50)`` gives the convolutions of TLlib's
MNIST↔USPS LeNet (800-d at 28×28); ``channels=(20, 50), fc_dim=500, dropout=0.5`` is
TLlib's whole ``LeNet`` (``tllib/vision/models/digits.py``: conv 20 → pool → ReLU →
conv 50 → Dropout2d(0.5) → pool → ReLU → Linear 500 → ReLU → Dropout(0.5); 500-d
features). ReLU and max-pool commute, as do max-pool and channel dropout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.models.mixstyle import MixStyle, mixstyle_rngs


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max-pool with stride 2 on NHWC input (odd trailing rows/columns dropped).

    Written as a reshape + max instead of ``lax.reduce_window``: on XLA's CPU backend the
    gradient of ``reduce_window`` (select-and-scatter) is about half as fast. The gradient
    goes to the *first* maximum of each window in row-major order, as in PyTorch's and
    cuDNN's max-pool; JAX's own derivative of ``max`` would split it among tied maxima,
    which costs a count and a division over the whole input (``docs/benchmarks.md``,
    series 3). Without ties the two are equal.
    """
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_bwd(res, g):
    x, y = res
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    xr = x[:, : h2 * 2, : w2 * 2].reshape(n, h2, 2, w2, 2, c)
    eq = xr == y[:, :, None, :, None, :]
    e00, e01, e10 = eq[:, :, 0, :, 0], eq[:, :, 0, :, 1], eq[:, :, 1, :, 0]
    first = (e00, e01 & ~e00, e10 & ~(e00 | e01), ~(e00 | e01 | e10))
    zero = jnp.zeros_like(g)
    m00, m01, m10, m11 = (jnp.where(f, g, zero) for f in first)
    dx = jnp.stack([jnp.stack([m00, m01], axis=3), jnp.stack([m10, m11], axis=3)], axis=2)
    dx = dx.reshape(n, h2 * 2, w2 * 2, c)
    return (jnp.pad(dx, ((0, 0), (0, h - h2 * 2), (0, w - w2 * 2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class LeNet(nnx.Module):
    """Two conv/pool blocks; returns ``{"features": (n, feature_dim), "conv1", "conv2"}``.

    Args:
      input_shape: ``(height, width, channels)`` of one example.
      channels: output channels of the two convolutions.
      padding: ``"VALID"`` (the papers' network) or ``"SAME"`` (keeps small inputs usable).
      fc_dim: width of a ``Linear → ReLU`` layer on the flattened maps (0 = none; the
        features are then the flattened maps).
      dropout: channel dropout after ``conv2`` and dropout after the ``fc`` layer (0 = none).
      mixstyle_layers: conv blocks (``"conv1"``, ``"conv2"``) after whose max-pool a
        :class:`~tljax.models.mixstyle.MixStyle` layer re-styles the maps in training mode.
        Empty (the default) builds none: parameters and outputs are as without the option.
        The returned ``"conv1"``/``"conv2"`` maps are after MixStyle.
      mixstyle_p, mixstyle_alpha, mixstyle_mode: MixStyle's ``p``, ``alpha`` and ``mode``.
      rngs: NNX random streams for initialisation (and dropout/MixStyle).
    """

    def __init__(
        self,
        input_shape,
        *,
        channels=(32, 48),
        padding="VALID",
        fc_dim: int = 0,
        dropout: float = 0.0,
        mixstyle_layers: tuple[str, ...] = (),
        mixstyle_p: float = 0.5,
        mixstyle_alpha: float = 0.1,
        mixstyle_mode: str = "random",
        rngs: nnx.Rngs,
    ):
        h, w, c = input_shape
        if padding not in ("VALID", "SAME"):
            raise ValueError(f"LeNet padding must be 'VALID' or 'SAME', got {padding!r}.")
        self.conv1 = nnx.Conv(c, channels[0], kernel_size=(5, 5), padding=padding, rngs=rngs)
        self.conv2 = nnx.Conv(
            channels[0], channels[1], kernel_size=(5, 5), padding=padding, rngs=rngs
        )
        shrink = 4 if padding == "VALID" else 0
        h, w = (h - shrink) // 2, (w - shrink) // 2
        h, w = (h - shrink) // 2, (w - shrink) // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"LeNet with {padding} padding needs larger inputs than {input_shape[:2]}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LeNet dropout must be in [0, 1), got {dropout!r}.")
        flat = h * w * channels[1]
        # Only built when asked for, so the default network's parameters stay as they were.
        drop2d = nnx.Dropout(dropout, broadcast_dims=(1, 2), rngs=rngs) if dropout else None
        self.conv2_drop = drop2d
        self.fc = nnx.Linear(flat, fc_dim, rngs=rngs) if fc_dim else None
        self.fc_drop = nnx.Dropout(dropout, rngs=rngs) if (dropout and fc_dim) else None
        self.feature_dim = fc_dim or flat
        if set(mixstyle_layers) - {"conv1", "conv2"}:
            raise ValueError(
                f"Unknown LeNet mixstyle_layers {tuple(mixstyle_layers)}; valid: ('conv1', "
                "'conv2')."
            )
        if mixstyle_layers:
            ms_rngs = mixstyle_rngs(rngs)  # draws nothing: other inits stay as they are
            self.mixstyle = nnx.Dict(
                {
                    name: MixStyle(
                        p=mixstyle_p, alpha=mixstyle_alpha, mode=mixstyle_mode, rngs=ms_rngs
                    )
                    for name in ("conv1", "conv2")
                    if name in mixstyle_layers
                }
            )

    def _mixstyle(self, name: str, x: jax.Array) -> jax.Array:
        return self.mixstyle[name](x) if name in getattr(self, "mixstyle", {}) else x

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        a1 = self._mixstyle("conv1", max_pool_2x2(nnx.relu(self.conv1(x))))
        a2 = self.conv2(a1)
        if self.conv2_drop is not None:
            a2 = self.conv2_drop(a2)
        a2 = self._mixstyle("conv2", max_pool_2x2(nnx.relu(a2)))
        f = a2.reshape(a2.shape[0], -1)
        if self.fc is not None:
            f = nnx.relu(self.fc(f))
            if self.fc_drop is not None:
                f = self.fc_drop(f)
        return {"features": f, "conv1": a1, "conv2": a2}


def lenet(
    input_shape,
    *,
    rngs: nnx.Rngs,
    channels=(32, 48),
    padding="VALID",
    fc_dim: int = 0,
    dropout: float = 0.0,
    mixstyle_layers=(),
    mixstyle_p: float = 0.5,
    mixstyle_alpha: float = 0.1,
    mixstyle_mode: str = "random",
) -> LeNet:
    """Factory used by the model registry."""
    return LeNet(
        tuple(input_shape),
        channels=tuple(channels),
        padding=padding,
        fc_dim=int(fc_dim),
        dropout=float(dropout),
        mixstyle_layers=tuple(mixstyle_layers),
        mixstyle_p=float(mixstyle_p),
        mixstyle_alpha=float(mixstyle_alpha),
        mixstyle_mode=mixstyle_mode,
        rngs=rngs,
    )


__all__ = ["LeNet", "lenet", "max_pool_2x2"]

"""uint8 images on the host, float pixels on the device.

The photo benchmarks are held in host memory as uint8 NHWC, as TFDS stores them (150 KB
per 224×224 RGB image, a quarter of float32), and sent to the device as uint8 (a quarter
of the transfer). The jitted train and eval steps start with :func:`to_float`: ``x / 255``
(as ``x * float32(1/255)``, the loader's float path) and, with ``data.standardize``, the
per-channel affine ``(p - mean) / std`` with the source-train statistics of
:func:`channel_stats`. The model, the augmentation and the methods see the same float
inputs as with float32 host arrays standardised by :func:`tljax.data.core.standardize`
(equal to float32 rounding, ~1e-6). Float inputs (digits, toys) and token ids pass
through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

SCALE = np.float32(1 / 255)


def is_uint8(x) -> bool:
    """Whether ``x`` (an array or array-like with ``dtype``) holds uint8 pixels."""
    return np.dtype(getattr(x, "dtype", np.float32)) == np.uint8


def channel_stats(x, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 NHWC images, in ``[0, 1]`` units.

    Exact integer sums over chunks of ``chunk`` images, so no float copy of the whole
    split is made (a float64 temporary of VisDA would take ~180 GB). ``x`` may be any
    indexable with ``shape`` whose slices are uint8 arrays (also a streamed source).

    Returns:
      ``(mean, std)`` float32 of shape ``(channels,)``; ``std`` at least ``1e-6`` as in
      :func:`tljax.data.core.standardize`.
    """
    n, channels = x.shape[0], x.shape[-1]
    total = np.zeros(channels, np.int64)
    squares = np.zeros(channels, np.int64)
    count = 0
    for start in range(0, n, chunk):
        c = np.asarray(x[start : start + chunk]).reshape(-1, channels).astype(np.int64)
        total += c.sum(0)
        squares += (c * c).sum(0)
        count += c.shape[0]
    mean = total / count
    var = np.maximum(squares / count - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var) / 255.0, 1e-6)
    return (mean / 255.0).astype(np.float32), std.astype(np.float32)


def to_float(x: jax.Array, mean=None, std=None) -> jax.Array:
    """uint8 pixels → float32 ``x / 255``, then ``(p - mean) / std`` if ``mean`` is given.

    Any other dtype is returned unchanged (already-float inputs were converted and
    standardised on the host; integer token ids are not pixels).
    """
    if x.dtype != jnp.uint8:
        return x
    p = x.astype(jnp.float32) * SCALE
    if mean is None:
        return p
    return (p - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _convert(batch, mean, std):
    out = dict(batch)
    for name, entry in batch.items():
        if isinstance(entry, dict) and "image" in entry:
            out[name] = {**entry, "image": to_float(entry["image"], mean, std)}
    return out


def with_to_float(train_step: Callable, mean=None, std=None) -> Callable:
    """Wraps a train step so every uint8 ``"image"`` entry of its batch is converted by
    :func:`to_float` first (outermost: augmentation and the method see float pixels)."""

    def step(state, batch, rng=None):
        return train_step(state, _convert(batch, mean, std), rng)

    return step


def eval_with_to_float(eval_step: Callable, mean=None, std=None) -> Callable:
    """Wraps ``eval_step(params, rest, images)`` so uint8 images are converted first."""

    def step(params, rest, images):
        return eval_step(params, rest, to_float(images, mean, std))

    return step

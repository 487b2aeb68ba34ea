r"""BatchNorm for mixed precision (and, optionally, PyTorch's running variance).

``nnx.BatchNorm`` promotes its input to the dtype of its running statistics: with float32
statistics (as they must be) and bfloat16 activations it returns **float32**, so every
layer after the first BatchNorm of a "bfloat16" network computed in float32 — its
convolutions included — and the activations kept for the backward pass were float32.
This :class:`BatchNorm` keeps the layer's output in the input's dtype and does the
arithmetic that needs range in float32:

.. math::
   \mu = \mathrm{mean}(x),\quad \sigma^2 = \mathrm{mean}(x^2) - \mu^2 \quad
   \text{(float32 accumulation)},\qquad
   y = \mathrm{cast}_{x}\!\big((x - \mu)\,\gamma\,(\sigma^2 + \epsilon)^{-1/2} + \beta\big)

with the running statistics updated in float32. In float32 it computes what
``nnx.BatchNorm`` computes (the same formula; ``use_fast_variance`` as NNX's default),
and it *is* an ``nnx.BatchNorm`` (same variables ``scale``, ``bias``, ``mean``, ``var``;
``isinstance`` holds), so weight import, AdaBN and frozen-statistics code work unchanged.

``unbiased_running_var=True`` updates the running variance with the unbiased batch
variance ``n/(n-1)·σ²`` (``n`` = elements per channel in the batch), as PyTorch does;
normalisation itself always uses the biased ``σ²``, as both frameworks do. Use it when
fine-tuning imported torchvision weights, so the running statistics follow PyTorch's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` whose output keeps the input's dtype (float32 statistics).

    Args:
      num_features: channels (the last axis).
      unbiased_running_var: update the running variance with ``n/(n-1)·σ²`` (PyTorch).
      **kwargs: as ``nnx.BatchNorm`` (``momentum``, ``epsilon``, ``axis_name``, ``rngs``...).
        ``dtype``, if given, fixes the output dtype instead.
    """

    def __init__(self, num_features: int, *, unbiased_running_var: bool = False, **kwargs):
        super().__init__(num_features, **kwargs)
        self.unbiased_running_var = unbiased_running_var

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *, mask=None):
        ura = self.use_running_average if use_running_average is None else use_running_average
        if ura is None:
            raise ValueError(
                "BatchNorm needs use_running_average (set by .train()/.eval() or the call)."
            )
        f32 = jnp.float32
        out_dtype = self.dtype or x.dtype
        axes = tuple(range(x.ndim - 1))
        xf = x.astype(f32)
        if ura:
            mean, var = self.mean[...].astype(f32), self.var[...].astype(f32)
        else:
            # ``mask`` (broadcastable to x; True = counted) leaves entries out of the
            # statistics, as nnx.BatchNorm's does; they are still normalised.
            where = None if mask is None else jnp.broadcast_to(mask, x.shape)
            mean = jnp.mean(xf, axes, where=where)
            if self.use_fast_variance:
                m2 = jnp.mean(jnp.square(xf), axes, where=where)
                var = jnp.maximum(m2 - jnp.square(mean), 0.0)
            else:
                var = jnp.mean(jnp.square(xf - mean), axes, where=where)
            if self.axis_name is not None:  # explicit collectives (pmap/shard_map)
                mean2 = jax.lax.pmean(var + jnp.square(mean), self.axis_name)
                mean = jax.lax.pmean(mean, self.axis_name)
                var = jnp.maximum(mean2 - jnp.square(mean), 0.0)
            run_var = var
            if self.unbiased_running_var:
                if where is None:
                    n = x.size // x.shape[-1]
                    run_var = var * (n / max(n - 1, 1))
                else:
                    n = jnp.sum(where, axes).astype(f32)
                    run_var = var * (n / jnp.maximum(n - 1, 1))
            m = self.momentum
            self.mean[...] = jax.lax.stop_gradient(m * self.mean[...] + (1 - m) * mean)
            self.var[...] = jax.lax.stop_gradient(m * self.var[...] + (1 - m) * run_var)
        mul = jax.lax.rsqrt(var + self.epsilon)
        if self.scale is not None:
            mul = mul * self.scale[...].astype(f32)
        y = (xf - mean) * mul
        if self.bias is not None:
            y = y + self.bias[...].astype(f32)
        return y.astype(out_dtype)


__all__ = ["BatchNorm"]

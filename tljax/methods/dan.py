r"""DAN: deep adaptation network (Long et al., ICML 2015).

.. math::
   \min_{F,C}\; \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\, \mathrm{MK\text{-}MMD}^2(F(x_s), F(x_t))

with a family of Gaussian kernels whose bandwidths come from the batch (mean pairwise squared
distance, no gradient through it). As TLlib's DAN (and unlike the paper, which adapts the
last three layers and learns the kernel weights by a max step), the kernels are equally
weighted, ``kernel_mul=2``, ``num_kernels=5`` (TLlib's ``GaussianKernel(alpha=2**k), k=-3..1``)
and the loss acts on one layer: ``features`` (the bottleneck output when the model has one).
TLlib's example uses the linear-time estimator by default (``linear=True``; its flag
``--non-linear`` switches to the quadratic one). Source and target batches must have equal
size. Loss: :func:`tljax.losses.mmd.mk_mmd`.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.mmd import mk_mmd
from tljax.methods.base import Method, no_params


def make(
    *, kernel_mul: float = 2.0, num_kernels: int = 5, linear: bool = True, unbiased: bool = True
) -> Method:
    """Builds DAN.

    Args:
      kernel_mul: ratio between consecutive kernel bandwidths.
      num_kernels: number of Gaussian kernels.
      linear: linear-time estimator (TLlib default) instead of the quadratic ``MMD²_u``.
      unbiased: for the quadratic estimator, drop the ``i = j`` within-domain terms.

    Raises:
      ValueError: for a non-positive ``kernel_mul`` or ``num_kernels``.
    """
    if not kernel_mul > 0 or not isinstance(num_kernels, int) or num_kernels < 1:
        raise ValueError(
            f"dan: need kernel_mul > 0 and an int num_kernels >= 1, got kernel_mul={kernel_mul!r}, "
            f"num_kernels={num_kernels!r}."
        )

    def loss(module, *, src, tgt, rng, step):
        del module, rng, step
        fs, ft = src.features.astype(jnp.float32), tgt.features.astype(jnp.float32)
        value = mk_mmd(
            fs, ft, kernel_mul=kernel_mul, num_kernels=num_kernels, linear=linear, unbiased=unbiased
        )
        return value, {"mmd": value}

    hp = dict(kernel_mul=kernel_mul, num_kernels=num_kernels, linear=linear, unbiased=unbiased)
    return Method(name="dan", init=no_params, loss=loss, hparams=hp)

r"""JAN: joint adaptation network (Long et al., ICML 2017).

.. math::
   \min_{F,C}\; \mathbb{E}_s[\ell(C(F(x)), y)]
   + \lambda\, \mathrm{JMMD}^2\big((F(x_s), \mathrm{softmax}(z_s)),
   (F(x_t), \mathrm{softmax}(z_t))\big)

The joint kernel is the product of a kernel on the features and one on the softmax
outputs. As TLlib's JAN: the feature kernel is the batch-set Gaussian family
(``kernel_mul=2``, ``num_kernels=5``), the softmax kernel a single Gaussian with
``σ = 0.92``; the quadratic estimator (TLlib's default, ``linear=False``); the softmax is
*not* detached, so the joint term also shapes the classifier. The adversarial JAN-A
variant (learned θ) is not implemented. Loss: :func:`tljax.losses.mmd.jmmd`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.losses.mmd import jmmd
from tljax.methods.base import Method, no_params


def make(
    *,
    kernel_mul: float = 2.0,
    num_kernels: int = 5,
    softmax_sigma: float = 0.92,
    linear: bool = False,
    unbiased: bool = True,
) -> Method:
    """Builds JAN.

    Args:
      kernel_mul: ratio between consecutive bandwidths of the feature kernels.
      num_kernels: number of feature kernels.
      softmax_sigma: σ of the fixed Gaussian kernel on the softmax outputs.
      linear: TLlib's linear-time estimator instead of the quadratic one.
      unbiased: for the quadratic estimator, drop the ``i = j`` within-domain terms.

    Raises:
      ValueError: for a non-positive ``kernel_mul``, ``num_kernels`` or ``softmax_sigma``.
    """
    if not kernel_mul > 0 or not isinstance(num_kernels, int) or num_kernels < 1:
        raise ValueError(
            f"jan: need kernel_mul > 0 and an int num_kernels >= 1, got kernel_mul={kernel_mul!r}, "
            f"num_kernels={num_kernels!r}."
        )
    if not softmax_sigma > 0:
        raise ValueError(f"jan: softmax_sigma must be > 0, got {softmax_sigma!r}.")

    def loss(module, *, src, tgt, rng, step):
        del module, rng, step
        fs, ft = src.features.astype(jnp.float32), tgt.features.astype(jnp.float32)
        ps, pt = jax.nn.softmax(src.logits, axis=-1), jax.nn.softmax(tgt.logits, axis=-1)
        value = jmmd(
            [fs, ps],
            [ft, pt],
            kernel_mul=kernel_mul,
            num_kernels=num_kernels,
            sigmas=(None, softmax_sigma),
            linear=linear,
            unbiased=unbiased,
        )
        return value, {"jmmd": value}

    hp = dict(
        kernel_mul=kernel_mul,
        num_kernels=num_kernels,
        softmax_sigma=softmax_sigma,
        linear=linear,
        unbiased=unbiased,
    )
    return Method(name="jan", init=no_params, loss=loss, hparams=hp)

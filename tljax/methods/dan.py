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

**Warm-start ramp (a departure from TLlib, issue 14 item 7).** The MMD term is multiplied
by the GRL methods' warm-start coefficient ``tanh(α i/(2N))`` (``ramp_alpha`` α = 1,
``ramp_max_iters`` N = 1000: 0.46 at step 1000, 0.76 at step 2000), so DAN, like DANN,
CDAN and MDD, lets the classifier form before alignment pulls on the features.
``ramp_max_iters=0`` restores TLlib's constant weight. Why: without it, the full MMD term
acts from step 0, and on the 2-D covariate shift ``shift2d/covariate`` (MLP 2→64→64, Adam
1e-3, 32+32 per step; ``configs/seeds_shift2d.py:dan,covariate``) every seed ended far
below source only: 1000 steps, 5 seeds, target accuracy 0.719–0.745 (mean 0.726) against
source only's 0.946; with the ramp 0.831–0.916 (mean 0.857). At 2000 steps, 10 seeds:
0.754–0.833 (mean 0.787) without, 0.811–0.962 (mean 0.909) with (source only 0.948).
What remains below source only is DAN's bias, not seed instability: under a covariate
shift that moves the support, ``p(y|x)`` is fixed and aligning the feature marginals
maps target points onto differently labelled source regions (DAN ends at ~0.5 for
``offset=3``, ramp or not, against source only's 0.84). ``docs/seeds.md``, "Seeds that
collapse on 2-D shifts", has the tables.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.grl import warm_start_coefficient
from tljax.losses.mmd import mk_mmd
from tljax.methods.base import Method, no_params


def make(
    *,
    kernel_mul: float = 2.0,
    num_kernels: int = 5,
    linear: bool = True,
    unbiased: bool = True,
    ramp_alpha: float = 1.0,
    ramp_max_iters: float = 1000.0,
) -> Method:
    """Builds DAN.

    Args:
      kernel_mul: ratio between consecutive kernel bandwidths.
      num_kernels: number of Gaussian kernels.
      linear: linear-time estimator (TLlib default) instead of the quadratic ``MMD²_u``.
      unbiased: for the quadratic estimator, drop the ``i = j`` within-domain terms.
      ramp_alpha, ramp_max_iters: the warm-start ramp of the MMD term (see above);
        ``ramp_max_iters=0`` turns it off (TLlib's DAN).

    Raises:
      ValueError: for a non-positive ``kernel_mul`` or ``num_kernels``.
    """
    if not kernel_mul > 0 or not isinstance(num_kernels, int) or num_kernels < 1:
        raise ValueError(
            f"dan: need kernel_mul > 0 and an int num_kernels >= 1, got kernel_mul={kernel_mul!r}, "
            f"num_kernels={num_kernels!r}."
        )

    def loss(module, *, src, tgt, rng, step):
        del module, rng
        fs, ft = src.features.astype(jnp.float32), tgt.features.astype(jnp.float32)
        value = mk_mmd(
            fs, ft, kernel_mul=kernel_mul, num_kernels=num_kernels, linear=linear, unbiased=unbiased
        )
        if ramp_max_iters > 0:
            ramp = warm_start_coefficient(step, alpha=ramp_alpha, max_iters=ramp_max_iters)
        else:
            ramp = jnp.ones((), jnp.float32)
        return ramp * value, {"mmd": value, "mmd_ramp": ramp}

    hp = dict(
        kernel_mul=kernel_mul,
        num_kernels=num_kernels,
        linear=linear,
        unbiased=unbiased,
        ramp_alpha=ramp_alpha,
        ramp_max_iters=ramp_max_iters,
    )
    return Method(name="dan", init=no_params, loss=loss, hparams=hp)

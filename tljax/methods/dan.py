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

**Optional warm-start ramp (issue 14 item 7; off by default, as TLlib).** With
``ramp_max_iters`` N > 0 the MMD term is multiplied by the GRL methods' warm-start
coefficient ``tanh(α i/(2N))`` (``ramp_alpha`` α; N = 1000: 0.46 at step 1000, 0.76 at
2000), so the classifier forms before alignment pulls on the features. Without it the full
MMD term acts from step 0, and on the 2-D covariate shift ``shift2d/covariate`` (MLP
2→64→64, Adam 1e-3, 32+32 per step; ``configs/seeds_shift2d.py:dan,covariate``, which
turns the ramp on) every seed ended far below source only: 1000 steps, 5 seeds, target
accuracy 0.719–0.745 against source only's mean of 0.946; with N = 1000, 0.831–0.916. At
2000 steps, 10 seeds: 0.754–0.833 (mean 0.787) without, 0.811–0.962 (mean 0.909) with
(source only 0.948). What remains is DAN's bias, not seed instability: under a covariate
shift that moves the support, ``p(y|x)`` is fixed and aligning the feature marginals maps
target points onto differently labelled source regions (offset 3: mean 0.515 without,
0.589 with, source only 0.842). The ramp stays off by default because weaker alignment
costs where alignment helps: ``configs/dan_digits_m.py`` seeds 0 and 1 reached 39.3 and
42.5% without it, 35.7 and 39.9% with it (two moons: 92.0 vs 92.1, 3 seeds).
``docs/seeds.md``, "Seeds that collapse on 2-D shifts", has the tables.
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
    ramp_max_iters: float = 0.0,
) -> Method:
    """Builds DAN.

    Args:
      kernel_mul: ratio between consecutive kernel bandwidths.
      num_kernels: number of Gaussian kernels.
      linear: linear-time estimator (TLlib default) instead of the quadratic ``MMD²_u``.
      unbiased: for the quadratic estimator, drop the ``i = j`` within-domain terms.
      ramp_alpha, ramp_max_iters: the warm-start ramp of the MMD term (see above);
        ``ramp_max_iters=0`` (default) turns it off (TLlib's DAN).

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

r"""BSP: batch spectral penalization on top of DANN (Chen et al., ICML 2019).

.. math::
   L = \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\, L_{DANN}
   + \beta \sum_{i \le k} \big(\sigma_i(F_s)^2 + \sigma_i(F_t)^2\big)

The largest singular values of the source and target feature matrices dominate what the
adversarial alignment transfers; penalising them keeps discriminability. As TLlib's BSP:
DANN (its discriminator, BCE and GRL schedule: all hyperparameters of
:mod:`tljax.methods.dann` are accepted) plus ``bsp_weight · bsp(f_s, f_t)`` with ``k = 1``
and ``β = 2e-4`` (TLlib's ``--trade-off-bsp``; the paper uses 1e-4). The penalty is part of
the method loss, so the total is ``task + weight · (dann + β·bsp)``; with the default
``weight = 1`` that is TLlib's objective. TLlib additionally pretrains on source for 3
epochs; here that is a separate run or a longer GRL warm start. Loss:
:func:`tljax.losses.bsp.bsp`.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.bsp import bsp
from tljax.methods import dann
from tljax.methods.base import Method


def make(*, bsp_weight: float = 2e-4, k: int = 1, **dann_hparams) -> Method:
    """Builds DANN + BSP.

    Args:
      bsp_weight: β, the weight of the spectral penalty inside the method loss.
      k: number of leading singular values penalised per domain.
      **dann_hparams: passed to :func:`tljax.methods.dann.make`.

    Raises:
      ValueError: for a negative ``bsp_weight`` or ``k < 1``.
      TypeError: for a hyperparameter DANN does not take.
    """
    if not bsp_weight >= 0:
        raise ValueError(f"bsp: bsp_weight must be >= 0, got {bsp_weight!r}.")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"bsp: k must be an int >= 1, got {k!r}.")
    base = dann.make(**dann_hparams)

    def loss(discriminator, *, src, tgt, rng, step):
        adv, metrics = base.loss(discriminator, src=src, tgt=tgt, rng=rng, step=step)
        penalty = bsp(src.features.astype(jnp.float32), tgt.features.astype(jnp.float32), k=k)
        return adv + bsp_weight * penalty, {**metrics, "dann_loss": adv, "bsp": penalty}

    hp = dict(base.hparams, bsp_weight=bsp_weight, k=k)
    return Method(name="bsp", init=base.init, loss=loss, hparams=hp)

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

**Low-dimensional features: lower β (issue 14 item 7; ``docs/seeds.md``).** BSP assumes
features of many directions, of which the top one carries too much of the transfer. The
64-d ReLU features of a 2-D input have an effective rank of 2–3: at initialisation σ₁²
holds 65% (source, ``N(0, I)``) to 89% (target moved by 2) of ``‖F‖²_F`` over 32 points,
and it is mostly the batch mean (``B‖f̄‖²`` ≈ 0.7–0.8 σ₁²). The penalty then shrinks the
bulk of the signal, not a dominant direction. On the 2-D covariate shift
(``configs/seeds_shift2d.py:bsp,covariate``, MLP 2→64→64, Adam 1e-3, 32+32 per step,
1000 steps, discriminator ``(32,)``, 5 seeds; source only 0.943–0.952) target accuracy
was 0.572–0.845 with β = 2e-4, 0.818–0.931 with 2e-5 and 0.939–0.952 with 2e-6; β = 0
gives DANN's 0.936–0.952 exactly. It is the penalty, not its interplay with the
reversal: without reversal (``grl_hi = 0``) β = 2e-4 still gave 0.840–0.905, and
neither ramping it with the GRL's warm start (0.626–0.790), a discriminator lr ×10
(0.543–0.918), centring the features (0.778–0.942), nor penalising one domain only
helped. The default stays TLlib's 2e-4 (its image features, from a 256-d bottleneck,
are the setting it was tuned for; the digits tables use it); for features of a
low-dimensional input, lower β by ~100× (the 2-D config uses 2e-6).
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

r"""MCC: minimum class confusion (Jin et al., ECCV 2020).

.. math::
   \min_{F,C}\; \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\, L_{MCC}(z_t),\qquad
   L_{MCC} = \tfrac{1}{C}\textstyle\sum_{j \ne k} \tilde M_{jk}

where ``M = Pᵀ diag(W) P`` is the class-correlation matrix of the temperature-scaled
target predictions ``P = softmax(z_t / T)``, re-weighted by the detached entropy weights
``W ∝ 1 + exp(−H(P_i))`` and column-normalised (``M̃``). As TLlib's MCC: applied to the
target logits only, ``T = 2.5``, trade-off 1. Loss: :func:`tljax.losses.mcc.mcc`.
"""

from __future__ import annotations

from tljax.losses.mcc import mcc
from tljax.methods.base import Method, no_params


def make(*, temperature: float = 2.5) -> Method:
    """Builds MCC.

    Args:
      temperature: the rescaling temperature ``T > 0``.

    Raises:
      ValueError: if ``temperature <= 0``.
    """
    if not temperature > 0:
        raise ValueError(f"mcc: temperature must be > 0, got {temperature!r}.")

    def loss(module, *, src, tgt, rng, step):
        del module, src, rng, step
        value = mcc(tgt.logits, temperature=temperature)
        return value, {"class_confusion": value}

    return Method(name="mcc", init=no_params, loss=loss, hparams=dict(temperature=temperature))

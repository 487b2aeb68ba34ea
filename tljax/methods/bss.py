r"""BSS: batch spectral shrinkage against negative transfer in fine-tuning (Chen, Wang,
Fu, Long & Wang, "Catastrophic Forgetting Meets Negative Transfer", NeurIPS 2019).

.. math::
   L = \mathbb{E}_s[\ell(C(F(x)), y)] + \eta \sum_{i=1}^{k} \sigma_{-i}^2(F)

where ``σ₋ᵢ`` are the ``k`` smallest singular values of the batch feature matrix
``F = F(x_s)`` (``features``: the bottleneck output when there is one). Small singular
directions carry the untransferable, noisy components of pretrained features; shrinking
them suppresses negative transfer. ``η`` is ``config.method.weight``; TLlib's
``bss.py`` uses ``k = 1`` and trade-off ``η = 0.001`` (the paper: 0.001, ``k = 1``).
A plain loss method on the labelled batch (``needs_target=False``: the default step runs
the source batch only). Loss: :func:`tljax.losses.bsp.bss`.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.bsp import bss
from tljax.methods.base import Method, no_params


def make(*, k: int = 1) -> Method:
    """Builds BSS.

    Args:
      k: number of trailing singular values penalised (at most ``min(batch, dim)``).

    Raises:
      ValueError: if ``k`` is not an int ``>= 1``.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"bss: k must be an int >= 1, got {k!r}.")

    def loss(module, *, src, tgt, rng, step):
        del module, tgt, rng, step
        value = bss(src.features.astype(jnp.float32), k=k)
        return value, {"bss": value}

    return Method(name="bss", init=no_params, loss=loss, hparams=dict(k=k), needs_target=False)

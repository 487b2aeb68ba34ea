r"""Entropy minimisation on the target (Grandvalet & Bengio, NeurIPS 2004).

.. math::
   \min_{F,C}\; \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\,
   \tfrac{1}{B}\textstyle\sum_i H(\mathrm{softmax}(z_{t,i}))

Pushes the decision boundary away from dense target regions (the cluster assumption).
TLlib uses it as an add-on (e.g. MCD's ``trade_off_entropy``); on its own it is the
classic semi-supervised baseline. Loss: :func:`tljax.losses.entropy.entropy`.
"""

from __future__ import annotations

from tljax.losses.entropy import entropy
from tljax.methods.base import Method, no_params


def make() -> Method:
    """Builds target entropy minimisation (no hyperparameters; the trade-off is the
    config's ``method.weight``)."""

    def loss(module, *, src, tgt, rng, step):
        del module, src, rng, step
        value = entropy(tgt.logits)
        return value, {"target_entropy": value}

    return Method(name="entropy", init=no_params, loss=loss)

r"""Deep CORAL: correlation alignment (Sun & Saenko, ECCV Workshops 2016).

.. math::
   \min_{F,C}\; \mathbb{E}_s[\ell(C(F(x)), y)]
   + \lambda\, \frac{1}{4d^2}\,\lVert C_S - C_T\rVert_F^2

with ``C_S``, ``C_T`` the (unbiased) covariances of the source and target batch.

* ``style="paper"`` (default) is the formula above. ``style="tllib"`` is TLlib's
  ``CorrelationAlignmentLoss`` (``‖C_S − C_T‖²/d² + ‖μ_S − μ_T‖²/d``); see
  :func:`tljax.losses.coral.coral`.
* ``on="features"`` (default) aligns ``features`` (the bottleneck output when there is
  one), as TLlib's CORAL; the paper applies the loss to the last layer (fc8, the logits):
  ``on="logits"``.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.coral import coral
from tljax.methods.base import Method, no_params

_ON = ("features", "logits")


def make(*, style: str = "paper", on: str = "features") -> Method:
    """Builds Deep CORAL.

    Args:
      style: ``"paper"`` or ``"tllib"`` normalisation.
      on: ``"features"`` or ``"logits"``: which layer is aligned.

    Raises:
      ValueError: for an unknown ``style`` or ``on``.
    """
    if style not in ("paper", "tllib"):
        raise ValueError(f"coral: style must be 'paper' or 'tllib', got {style!r}.")
    if on not in _ON:
        raise ValueError(f"coral: on must be one of {list(_ON)}, got {on!r}.")

    def loss(module, *, src, tgt, rng, step):
        del module, rng, step
        xs, xt = (src.features, tgt.features) if on == "features" else (src.logits, tgt.logits)
        value = coral(xs.astype(jnp.float32), xt.astype(jnp.float32), style=style)
        return value, {"coral": value}

    return Method(name="coral", init=no_params, loss=loss, hparams=dict(style=style, on=on))

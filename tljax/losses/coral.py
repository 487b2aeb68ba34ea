"""Deep CORAL: second-order statistics alignment (Sun & Saenko, ECCV-W 2016)."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp


def _covariance(f: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(f, axis=0)
    centred = f - mean
    return mean, centred.T @ centred / (f.shape[0] - 1)


def coral(xs: jax.Array, xt: jax.Array, *, style: Literal["paper", "tllib"] = "paper") -> jax.Array:
    """CORAL loss between source and target features.

    * ``style="paper"`` (default), Sun & Saenko (2016), eq. 1::

        ℓ = ||C_s − C_t||_F² / (4 d²)

      with unbiased covariances ``C = (D − 1 μᵀ)ᵀ (D − 1 μᵀ) / (n − 1)`` (the paper's eq. 2).
    * ``style="tllib"``, TLlib's ``CorrelationAlignmentLoss``, which also matches means and
      normalises differently: ``||C_s − C_t||_F² / d² + ||μ_s − μ_t||² / d``. Use it (with
      TLlib's trade-off) to reproduce TLlib's CORAL numbers; note the covariance term is 4×
      the paper's.

    The paper form is the default because its scale is what CORAL's published trade-off
    weights refer to; the difference to TLlib is a constant factor plus the mean term.

    Args:
      xs: source features ``(n_s, d)``; the batch sizes may differ between domains.
      xt: target features ``(n_t, d)``.
      style: ``"paper"`` or ``"tllib"``.

    Returns:
      A scalar.

    Raises:
      ValueError: if the inputs are not 2-D, the feature sizes differ, a batch has fewer than
        2 rows, or ``style`` is unknown.
    """
    if style not in ("paper", "tllib"):
        raise ValueError(f"coral: style must be 'paper' or 'tllib', got {style!r}.")
    if xs.ndim != 2 or xt.ndim != 2 or xs.shape[1] != xt.shape[1]:
        raise ValueError(
            "coral: expected 2-D features (batch, d) with the same d, got shapes "
            f"{tuple(xs.shape)} and {tuple(xt.shape)}."
        )
    if xs.shape[0] < 2 or xt.shape[0] < 2:
        raise ValueError(
            f"coral: covariances need at least 2 rows per batch, got {xs.shape[0]} and "
            f"{xt.shape[0]}."
        )
    d = xs.shape[1]
    mean_s, cov_s = _covariance(xs)
    mean_t, cov_t = _covariance(xt)
    cov_term = jnp.sum((cov_s - cov_t) ** 2)
    if style == "paper":
        return cov_term / (4.0 * d * d)
    return cov_term / (d * d) + jnp.sum((mean_s - mean_t) ** 2) / d

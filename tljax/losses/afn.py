"""Adaptive feature norm (AFN, Xu et al., ICCV 2019): SAFN and HAFN."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _row_norms(features: jax.Array, what: str) -> jax.Array:
    if features.ndim < 2:
        raise ValueError(f"{what}: expected features (batch, ...), got {tuple(features.shape)}.")
    f = features.reshape(features.shape[0], -1)
    sq = jnp.sum(f * f, axis=-1)
    # sqrt has an infinite derivative at 0 (e.g. an all-zero ReLU row); use 0 there instead.
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def safn(features: jax.Array, *, delta_r: float = 1.0) -> jax.Array:
    """Stepwise adaptive feature norm (SAFN), as the official code and TLlib.

    ``L = 1/B Σ_i (||f_i|| − (sg(||f_i||) + Δr))²`` where ``sg`` is stop-gradient. Its value is
    always ``Δr²``; its gradient ``−2Δr · f_i / (B ||f_i||)`` makes a descent step enlarge
    every feature norm. Rows are flattened; an all-zero row gets zero gradient.

    Args:
      features: ``(batch, ...)``, typically the bottleneck features of either domain.
      delta_r: the norm increment Δr per step.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``features`` has fewer than 2 dimensions.
    """
    norms = _row_norms(features, "safn")
    radius = jax.lax.stop_gradient(norms) + delta_r
    return jnp.mean((norms - radius) ** 2)


def hafn(features: jax.Array, *, radius: float = 25.0) -> jax.Array:
    """Hard adaptive feature norm (HAFN): ``L = (1/B Σ_i ||f_i|| − R)²``.

    Apply it to each domain separately and add the two, as the paper does.

    Args:
      features: ``(batch, ...)``.
      radius: the target mean norm ``R``.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``features`` has fewer than 2 dimensions.
    """
    return (jnp.mean(_row_norms(features, "hafn")) - radius) ** 2

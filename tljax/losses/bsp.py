"""Spectral penalties on feature batches: BSP (transferability) and BSS (negative transfer)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _squared_singular_values(features: jax.Array, k: int, what: str) -> jax.Array:
    """Squared singular values in descending order, after validating ``k``."""
    if features.ndim != 2:
        raise ValueError(f"{what}: expected features (batch, dim), got {tuple(features.shape)}.")
    rank = min(features.shape)
    if not isinstance(k, int) or not 1 <= k <= rank:
        raise ValueError(
            f"{what}: k must be an int in [1, min(batch, dim)] = [1, {rank}] for features of "
            f"shape {tuple(features.shape)}, got {k!r}."
        )
    # Gradients of singular values are well defined where they are distinct (generic input).
    return jnp.linalg.svd(features, compute_uv=False) ** 2


def bsp(features_s: jax.Array, features_t: jax.Array, *, k: int = 1) -> jax.Array:
    """Batch spectral penalization (BSP, Chen et al., ICML 2019).

    ``L = Σ_{i≤k} σ_i(F_s)² + Σ_{i≤k} σ_i(F_t)²`` with ``σ_1 ≥ σ_2 ≥ …`` the singular values of
    each batch feature matrix, i.e. the ``k`` largest eigenvalues of ``Fᵀ F``. TLlib's
    ``BatchSpectralPenalizationLoss`` is the ``k = 1`` case (the paper's default).

    Args:
      features_s: source features ``(batch_s, dim)``.
      features_t: target features ``(batch_t, dim)``.
      k: number of leading singular values penalised per domain.

    Returns:
      A scalar.

    Raises:
      ValueError: if an input is not 2-D or ``k`` is out of range.
    """
    top_s = _squared_singular_values(features_s, k, "bsp (source)")[:k]
    top_t = _squared_singular_values(features_t, k, "bsp (target)")[:k]
    return jnp.sum(top_s) + jnp.sum(top_t)


def bss(features: jax.Array, *, k: int = 1) -> jax.Array:
    """Batch spectral shrinkage (BSS, Chen et al., NeurIPS 2019).

    ``L = Σ_{i≤k} σ_{r+1−i}(F)²``: the ``k`` smallest of the ``r = min(batch, dim)`` singular
    values of the feature matrix, squared (as TLlib's ``BatchSpectralShrinkage``).

    Args:
      features: ``(batch, dim)``.
      k: number of trailing singular values penalised.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``features`` is not 2-D or ``k`` is out of range.
    """
    return jnp.sum(_squared_singular_values(features, k, "bss")[-k:])

"""Contrastive losses: NT-Xent (SimCLR, Chen et al., ICML 2020)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nt_xent(z1: jax.Array, z2: jax.Array, *, temperature: float = 0.5) -> jax.Array:
    """Normalised temperature-scaled cross-entropy over ``2N`` views.

    With ``u = [z1; z2]`` L2-normalised, ``s_ij = u_iᵀ u_j / τ`` and ``p(i)`` the other view of
    sample ``i``::

        L = 1/(2N) Σ_i −log( exp(s_{i,p(i)}) / Σ_{k≠i} exp(s_ik) )

    Each anchor has one positive and ``2N − 2`` negatives (the paper's eq. 1, averaged over all
    ``2N`` anchors).

    Args:
      z1: ``(N, d)`` projections of the first view.
      z2: ``(N, d)`` projections of the second view, row ``i`` paired with ``z1[i]``.
      temperature: ``τ > 0``.

    Returns:
      A scalar.

    Raises:
      ValueError: on mismatched shapes, ``N < 2`` or a non-positive temperature.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"nt_xent: expected two (N, d) arrays of the same shape, got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}."
        )
    if z1.shape[0] < 2:
        raise ValueError(f"nt_xent: need N >= 2 pairs to have negatives, got N={z1.shape[0]}.")
    if not temperature > 0:
        raise ValueError(f"nt_xent: temperature must be > 0, got {temperature!r}.")
    n = z1.shape[0]
    u = jnp.concatenate([z1, z2], axis=0)
    sq = jnp.sum(u * u, axis=-1, keepdims=True)
    # x / max(||x||, eps) as torch's F.normalize; keeps the gradient finite at 0.
    u = u * jax.lax.rsqrt(jnp.maximum(sq, 1e-24))
    sim = (u @ u.T) / temperature
    sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, sim)
    positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    log_prob = jnp.take_along_axis(sim, positives[:, None], axis=-1)[:, 0] - jax.nn.logsumexp(
        sim, axis=-1
    )
    return -jnp.mean(log_prob)

"""The domain-adversarial loss with optional per-example weights (DANN, PADA).

``domain_adversarial_loss(d_s, d_t)`` is DANN's ``½(BCE(D(f_s), 1) + BCE(D(f_t), 0))`` on
discriminator logits, exactly as :mod:`tljax.methods.dann` computes it inline. With
weights it is TLlib's weighted ``DomainAdversarialLoss``: each side is the weighted BCE
mean ``mean_i(w_i · BCE_i)`` (PyTorch's ``binary_cross_entropy(weight=w)`` with
``reduction="mean"``), so the weights are *not* renormalised to sum to one: PADA passes
class weights already normalised by their maximum (:func:`normalize_by_max`), which scale
the source side down where the target lacks a class.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def normalize_by_max(w: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``w / max(w)`` (PADA's class-weight normalisation), with no gradient through it."""
    w = jax.lax.stop_gradient(jnp.asarray(w, jnp.float32))
    return w / jnp.maximum(jnp.max(w), eps)


def domain_adversarial_loss(
    d_source: jax.Array,
    d_target: jax.Array,
    *,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> jax.Array:
    """``½(mean_i w^s_i BCE(d^s_i, 1) + mean_j w^t_j BCE(d^t_j, 0))`` on logits.

    Args:
      d_source, d_target: discriminator logits ``(n_s,)`` and ``(n_t,)`` (or ``(n, 1)``).
      source_weights, target_weights: optional per-example weights; ``None`` is weight 1
        (the unweighted DANN loss).
    """
    d_source = jnp.reshape(d_source, (-1,)).astype(jnp.float32)
    d_target = jnp.reshape(d_target, (-1,)).astype(jnp.float32)
    bce_s = optax.sigmoid_binary_cross_entropy(d_source, jnp.ones_like(d_source))
    bce_t = optax.sigmoid_binary_cross_entropy(d_target, jnp.zeros_like(d_target))
    if source_weights is not None:
        bce_s = bce_s * jnp.reshape(jnp.asarray(source_weights, jnp.float32), bce_s.shape)
    if target_weights is not None:
        bce_t = bce_t * jnp.reshape(jnp.asarray(target_weights, jnp.float32), bce_t.shape)
    return 0.5 * (bce_s.mean() + bce_t.mean())

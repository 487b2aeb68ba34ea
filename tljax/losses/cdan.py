"""Conditioning maps of CDAN (Long et al., NeurIPS 2018): multilinear maps and entropy weights.

The caller is responsible for detaching the class probabilities: CDAN (paper and TLlib) feeds
``stop_gradient(softmax(logits))`` into the map, so the adversarial gradient reaches the
classifier only through the features. These functions do not detach ``probs`` themselves so
that variants that condition on non-detached predictions remain expressible.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy


def _check(features: jax.Array, probs: jax.Array, what: str) -> None:
    if features.ndim != 2 or probs.ndim != 2 or features.shape[0] != probs.shape[0]:
        raise ValueError(
            f"{what}: expected features (batch, F) and probs (batch, C) with the same batch, "
            f"got {tuple(features.shape)} and {tuple(probs.shape)}."
        )


def multilinear_map(features: jax.Array, probs: jax.Array) -> jax.Array:
    """Flattened outer product ``T(f, g) = g ⊗ f``.

    ``out[b, c · F + j] = probs[b, c] · features[b, j]``: class-major ordering, as TLlib's
    ``MultiLinearMap`` (``bmm(g.unsqueeze(2), f.unsqueeze(1)).view(b, -1)``), so discriminator
    weights are interchangeable with TLlib's.

    Args:
      features: ``(batch, F)``.
      probs: ``(batch, C)``, normally ``stop_gradient(softmax(logits))``.

    Returns:
      ``(batch, C · F)``.

    Raises:
      ValueError: if the shapes are not ``(batch, F)`` and ``(batch, C)``.
    """
    _check(features, probs, "multilinear_map")
    outer = probs[:, :, None] * features[:, None, :]
    return outer.reshape(features.shape[0], -1)


def randomized_multilinear_map(
    features: jax.Array, probs: jax.Array, rf: jax.Array, rg: jax.Array
) -> jax.Array:
    """Randomized multilinear map ``T(f, g) = (f R_f) ⊙ (g R_g) / √d``.

    ``R_f`` (``F × d``) and ``R_g`` (``C × d``) are fixed random matrices, drawn once (TLlib:
    standard normal) and kept constant during training; pass them in, e.g. from
    ``jax.random.normal`` with a fixed key, and do not train them.

    Args:
      features: ``(batch, F)``.
      probs: ``(batch, C)``, normally ``stop_gradient(softmax(logits))``.
      rf: ``(F, d)``.
      rg: ``(C, d)``.

    Returns:
      ``(batch, d)``.

    Raises:
      ValueError: if the shapes do not chain.
    """
    _check(features, probs, "randomized_multilinear_map")
    if (
        rf.ndim != 2
        or rg.ndim != 2
        or rf.shape[0] != features.shape[1]
        or rg.shape[0] != probs.shape[1]
        or rf.shape[1] != rg.shape[1]
    ):
        raise ValueError(
            "randomized_multilinear_map: need rf (F, d) and rg (C, d) for features (batch, F) and "
            f"probs (batch, C); got features {tuple(features.shape)}, probs "
            f"{tuple(probs.shape)}, rf {tuple(rf.shape)}, rg {tuple(rg.shape)}."
        )
    return (features @ rf) * (probs @ rg) / math.sqrt(rf.shape[1])


def entropy_conditioning_weights(probs: jax.Array) -> jax.Array:
    """Entropy-conditioning weights of CDAN+E, normalised as TLlib.

    ``w_i = 1 + exp(−H(p_i))``, then ``w ← B · w / Σ_j w_j`` (mean 1) over the batch given,
    which in TLlib is source and target concatenated. The result is detached. The entropy is
    exact (``0 · log 0 = 0``); TLlib uses ``log(p + 1e-5)``.

    Args:
      probs: ``(batch, C)`` class probabilities.

    Returns:
      ``(batch,)`` weights, to weight the per-sample discriminator BCE.

    Raises:
      ValueError: if ``probs`` is not 2-D.
    """
    if probs.ndim != 2:
        raise ValueError(
            f"entropy_conditioning_weights: expected probs (batch, C), got {tuple(probs.shape)}."
        )
    probs = jax.lax.stop_gradient(probs)
    h = -jnp.sum(xlogy(probs, probs), axis=-1)
    w = 1.0 + jnp.exp(-h)
    return probs.shape[0] * w / jnp.sum(w)

"""Prediction entropy and information maximisation (entropy minimisation, SHOT)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _check_logits(logits: jax.Array, what: str) -> None:
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(
            f"{what}: expected logits of shape (batch, num_classes), got {tuple(logits.shape)}."
        )


def entropy_per_sample(logits: jax.Array) -> jax.Array:
    """Shannon entropy of ``softmax(logits)`` for each row, in nats.

    ``H_i = −Σ_c p_ic log p_ic``, computed as ``−Σ_c p_ic · log_softmax(z_i)_c``, which is exact
    and finite for any finite logits. TLlib's ``entropy`` takes probabilities and uses
    ``log(p + 1e-5)``; the two agree to ~1e-5 per class.

    Args:
      logits: ``(batch, num_classes)``.

    Returns:
      ``(batch,)`` entropies.

    Raises:
      ValueError: if ``logits`` is not 2-D.
    """
    _check_logits(logits, "entropy_per_sample")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def entropy(logits: jax.Array) -> jax.Array:
    """Mean entropy of the predictions (entropy minimisation, Grandvalet & Bengio 2005).

    ``L = 1/B Σ_i H(softmax(z_i))``.

    Args:
      logits: ``(batch, num_classes)``.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``logits`` is not 2-D.
    """
    return jnp.mean(entropy_per_sample(logits))


def information_maximization(logits: jax.Array) -> jax.Array:
    """Information-maximisation loss (SHOT, Liang et al., ICML 2020).

    ``L = 1/B Σ_i H(p_i) − H(p̄)`` with ``p̄ = 1/B Σ_i p_i``: confident individual predictions,
    diverse predictions over the batch. It equals minus the empirical mutual information
    between inputs and predicted labels, so ``−log C ≤ L ≤ 0``. ``log p̄`` is computed as
    ``logsumexp_i(log p_i) − log B`` (SHOT uses ``log(p̄ + 1e-5)``).

    Args:
      logits: ``(batch, num_classes)``.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``logits`` is not 2-D.
    """
    _check_logits(logits, "information_maximization")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    log_mean = jax.nn.logsumexp(log_p, axis=0) - math.log(logits.shape[0])
    marginal_entropy = -jnp.sum(jnp.exp(log_mean) * log_mean)
    return entropy(logits) - marginal_entropy

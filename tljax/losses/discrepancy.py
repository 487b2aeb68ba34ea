"""Classifier discrepancy (MCD, Saito et al., CVPR 2018)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def classifier_discrepancy(logits1: jax.Array, logits2: jax.Array) -> jax.Array:
    """Mean absolute difference of two classifiers' softmax outputs.

    ``d = 1/(B C) Σ_i Σ_c |p1_ic − p2_ic|`` (the paper's eq. 1 averaged over the batch; TLlib's
    ``classifier_discrepancy``, which takes probabilities where this takes logits). Symmetric,
    ≥ 0, and 0 iff the two softmaxes agree. In MCD, the two heads maximise it on target data
    (step B) and the generator minimises it (step C).

    Args:
      logits1: ``(batch, C)``.
      logits2: ``(batch, C)``.

    Returns:
      A scalar.

    Raises:
      ValueError: if the shapes differ or are not 2-D.
    """
    if logits1.ndim != 2 or logits1.shape != logits2.shape:
        raise ValueError(
            "classifier_discrepancy: expected two (batch, C) logit arrays of the same shape, got "
            f"{tuple(logits1.shape)} and {tuple(logits2.shape)}."
        )
    p1 = jax.nn.softmax(logits1, axis=-1)
    p2 = jax.nn.softmax(logits2, axis=-1)
    return jnp.mean(jnp.abs(p1 - p2))

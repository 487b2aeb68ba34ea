"""Classifier discrepancy and the class-balance term of MCD (Saito et al., CVPR 2018)."""

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


def class_balance_entropy(logits: jax.Array, eps: float = 1e-6) -> jax.Array:
    """MCD's target "entropy" term as in TLlib: a class-balance loss on the batch-mean prediction.

    ``L = −1/C Σ_c log(p̄_c + ε)`` with ``p̄_c = 1/B Σ_i softmax(z_i)_c`` and ``ε = 1e-6``:
    TLlib's ``tllib/alignment/mcd.py`` ``entropy(predictions)``, i.e.
    ``-torch.mean(torch.log(torch.mean(predictions, 0) + 1e-6))``, which its MCD example adds
    to steps A and B with ``--trade-off-entropy 0.01``. Despite the name it is not the Shannon
    entropy of anything: it is the cross-entropy from the uniform distribution to ``p̄``,
    ``log C + KL(u ‖ p̄)`` (for ``ε = 0``), minimal (``log C``) when the heads predict every
    class equally often over the batch, so minimising it spreads the target predictions over
    the classes instead of making each one confident (as the per-sample
    :func:`tljax.losses.entropy.entropy` does).

    Args:
      logits: ``(batch, C)``.
      eps: added to ``p̄`` before the log (TLlib's 1e-6); bounds the loss and its gradient
        when a class gets no probability mass.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``logits`` is not 2-D.
    """
    if logits.ndim != 2:
        raise ValueError(
            f"class_balance_entropy: expected (batch, C) logits, got shape {tuple(logits.shape)}."
        )
    p_mean = jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)
    return -jnp.mean(jnp.log(p_mean + eps))

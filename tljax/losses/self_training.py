"""Self-training losses: confidence-thresholded pseudo labels (FixMatch), mean-teacher MSE."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_pair(a: jax.Array, b: jax.Array, what: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{what}: expected two (batch, C) logit arrays of the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )


def pseudo_label_loss(
    logits_weak: jax.Array, logits_strong: jax.Array, *, threshold: float = 0.95
) -> tuple[jax.Array, jax.Array]:
    """FixMatch unlabeled loss (Sohn et al., NeurIPS 2020).

    With ``q_i = softmax(sg(z^weak_i))``, ``ŷ_i = argmax q_i`` and ``m_i = [max q_i ≥ τ]``::

        L = 1/B Σ_i m_i · CE(z^strong_i, ŷ_i)

    averaged over the whole batch (masked samples count as zeros), as the paper and TLlib's
    ``ConfidenceBasedSelfTrainingLoss``. The mask uses ``≥`` as the official FixMatch code
    (TLlib uses ``>``; they differ only on exact ties).

    Args:
      logits_weak: ``(batch, C)`` logits of the weakly augmented view (no gradient flows).
      logits_strong: ``(batch, C)`` logits of the strongly augmented view.
      threshold: confidence threshold τ in ``[0, 1]``.

    Returns:
      ``(loss, mask_rate)``: the scalar loss and the fraction of samples above threshold.

    Raises:
      ValueError: on mismatched shapes or a threshold outside ``[0, 1]``.
    """
    _check_pair(logits_weak, logits_strong, "pseudo_label_loss")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"pseudo_label_loss: threshold must be in [0, 1], got {threshold!r}.")
    probs = jax.nn.softmax(jax.lax.stop_gradient(logits_weak), axis=-1)
    labels = jnp.argmax(probs, axis=-1)
    mask = (jnp.max(probs, axis=-1) >= threshold).astype(logits_strong.dtype)
    log_p = jax.nn.log_softmax(logits_strong, axis=-1)
    ce = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(ce * mask), jnp.mean(mask)


def consistency_mse(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """Mean-teacher consistency (Tarvainen & Valpola, NeurIPS 2017).

    ``L = 1/(B C) Σ_i ||softmax(z^student_i) − softmax(sg(z^teacher_i))||²``: the mean over
    batch and classes, as the official code (``softmax_mse_loss / C``, averaged per batch).
    The teacher receives no gradient.

    Args:
      student_logits: ``(batch, C)``.
      teacher_logits: ``(batch, C)``, e.g. from the EMA model.

    Returns:
      A scalar.

    Raises:
      ValueError: on mismatched shapes.
    """
    _check_pair(student_logits, teacher_logits, "consistency_mse")
    p_student = jax.nn.softmax(student_logits, axis=-1)
    p_teacher = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits), axis=-1)
    return jnp.mean((p_student - p_teacher) ** 2)

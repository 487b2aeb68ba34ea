"""Margin disparity discrepancy (MDD, Zhang et al., ICML 2019), classification version."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def shift_log(x: jax.Array, offset: float = 1e-6) -> jax.Array:
    """``log(min(x + offset, 1))``: a log that stays finite at ``x = 0`` (TLlib's ``shift_log``).

    Args:
      x: non-negative values, typically probabilities.
      offset: added before the log.

    Returns:
      An array like ``x``.
    """
    return jnp.log(jnp.minimum(x + offset, 1.0))


def _log_one_minus_softmax(logits: jax.Array, labels: jax.Array, offset: float) -> jax.Array:
    """``log(min(1 − softmax(z)_y + offset, 1))`` per row, without cancellation.

    ``log(1 − p_y) = logsumexp_{c≠y} z_c − logsumexp_c z_c`` exactly; the offset is added in
    log space with ``logaddexp``.
    """
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    others = jnp.where(onehot, -jnp.inf, logits)
    log_rest = jax.nn.logsumexp(others, axis=-1) - jax.nn.logsumexp(logits, axis=-1)
    if offset > 0:
        log_rest = jnp.logaddexp(log_rest, math.log(offset))
    return jnp.minimum(log_rest, 0.0)


def mdd(
    *,
    y_s: jax.Array,
    y_s_adv: jax.Array,
    y_t: jax.Array,
    y_t_adv: jax.Array,
    margin: float = 4.0,
    offset: float = 1e-6,
) -> jax.Array:
    """Classification margin disparity discrepancy, as TLlib's
    ``ClassificationMarginDisparityDiscrepancy``.

    With pseudo labels ``ŷ = argmax`` of the main head's (detached) logits and ``p' =
    softmax`` of the adversarial head::

        D = −γ · 1/B Σ_s CE(y_s_adv, ŷ_s)  +  1/B Σ_t log(1 − p'_t[ŷ_t] + offset)
          = −γ · source_term − target_term,   target_term = −log(1 − p'_t[ŷ_t])

    This is the paper's ``D_γ`` surrogate (Sec. 4 of the paper) and the value TLlib's module
    returns. Sign convention: the **adversarial head maximises D** (agree with the main head on
    source, disagree on target) and the **feature extractor minimises D**. TLlib trains it by
    minimising ``cls_loss + trade_off · (−D)`` with a gradient reversal layer (warm start,
    ``hi=0.1``) between the features and the adversarial head; do the same:
    ``transfer_loss = -mdd(...)``. The main-head logits receive no gradient from D.

    ``log(1 − p)`` is computed from logits without cancellation; ``offset`` (TLlib: 1e-6)
    bounds it below by ``log(offset)`` as TLlib's ``shift_log`` does; ``offset=0`` disables it.

    Args:
      y_s: main-head logits on source ``(batch_s, C)``.
      y_s_adv: adversarial-head logits on source, same shape as ``y_s``.
      y_t: main-head logits on target ``(batch_t, C)``.
      y_t_adv: adversarial-head logits on target, same shape as ``y_t``.
      margin: the margin factor γ (TLlib default 4).
      offset: lower clamp offset for ``log(1 − p)``.

    Returns:
      The scalar ``D``.

    Raises:
      ValueError: if shapes are not ``(batch, C)`` pairs with matching ``C``, or ``offset < 0``.
    """
    for name, a, b in (("source", y_s, y_s_adv), ("target", y_t, y_t_adv)):
        if a.ndim != 2 or a.shape != b.shape:
            raise ValueError(
                f"mdd: {name} main and adversarial logits must both be (batch, C) with the same "
                f"shape, got {tuple(a.shape)} and {tuple(b.shape)}."
            )
    if y_s.shape[1] != y_t.shape[1]:
        raise ValueError(
            f"mdd: source and target logits have different class counts, {y_s.shape[1]} and "
            f"{y_t.shape[1]}."
        )
    if offset < 0:
        raise ValueError(f"mdd: offset must be >= 0, got {offset!r}.")
    pred_s = jnp.argmax(jax.lax.stop_gradient(y_s), axis=-1)
    pred_t = jnp.argmax(jax.lax.stop_gradient(y_t), axis=-1)
    log_p_s = jax.nn.log_softmax(y_s_adv, axis=-1)
    source_term = -jnp.mean(jnp.take_along_axis(log_p_s, pred_s[:, None], axis=-1))
    log_one_minus = _log_one_minus_softmax(y_t_adv, pred_t, offset)
    return -margin * source_term + jnp.mean(log_one_minus)

"""Minimum class confusion (MCC, Jin et al., ECCV 2020)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.losses.entropy import entropy_per_sample


def mcc(logits: jax.Array, *, temperature: float = 2.5) -> jax.Array:
    """Minimum class confusion loss, as TLlib's ``MinimumClassConfusionLoss``.

    With ``P = softmax(z / T)`` (``B × C``) and per-sample entropy ``H_i`` of ``P_i``::

        w_i = 1 + exp(−H_i),   W = B · w / Σ_i w_i          (detached)
        M   = Pᵀ diag(W) P                                  (C × C, symmetric)
        M̃_jk = M_jk / Σ_j' M_j'k                            (columns sum to 1)
        L   = (Σ_jk M̃_jk − tr M̃) / C = 1 − tr(M̃) / C

    The paper (eq. 6) normalises each column; TLlib divides by the row sums broadcast over
    columns, which is the same because ``M`` is symmetric. TLlib computes ``H`` with
    ``log(p + 1e-5)``; we use the exact entropy (weights differ by ~1e-5).

    Bounds: since ``M̃_jj = Σ W p_j² / Σ W p_j ≥ Σ_i W_i p_ij / B`` (Cauchy–Schwarz), the
    trace is ≥ 1, so ``0 ≤ L ≤ 1 − 1/C``; ``L = 1 − 1/C`` for uniform predictions and
    ``L → 0`` for confident predictions without confusion.

    Args:
      logits: ``(batch, num_classes)``, typically target-domain logits.
      temperature: rescaling temperature ``T > 0`` (TLlib default 2.5).

    Returns:
      A scalar.

    Raises:
      ValueError: if ``logits`` is not 2-D or ``temperature`` is not positive.
    """
    if logits.ndim != 2:
        raise ValueError(f"mcc: expected logits (batch, num_classes), got {tuple(logits.shape)}.")
    if not temperature > 0:
        raise ValueError(f"mcc: temperature must be > 0, got {temperature!r}.")
    batch, num_classes = logits.shape
    scaled = logits / temperature
    probs = jax.nn.softmax(scaled, axis=-1)
    w = 1.0 + jnp.exp(-entropy_per_sample(jax.lax.stop_gradient(scaled)))
    w = jax.lax.stop_gradient(batch * w / jnp.sum(w))
    confusion = (probs * w[:, None]).T @ probs
    confusion = confusion / jnp.sum(confusion, axis=0, keepdims=True)
    return (jnp.sum(confusion) - jnp.trace(confusion)) / num_classes

r"""T3A: test-time classifier adjustment (Iwasawa & Matsuo, NeurIPS 2021).

No back-propagation: the linear head is replaced by class prototypes built from a support
set of test features. The support set starts with the head's weight vectors
``w_c`` (labelled by ``argmax(head(w_c))``); each test feature ``z`` joins it with its
pseudo-label ``ŷ = argmax head(z)`` and the entropy of ``softmax(head(z))``; per class only
the ``M`` (``filter_k``) supports of lowest entropy are kept. Predictions are

.. math:: \mathrm{logit}_c(z) = z^\top \frac{\sum_{s\in S_c} s/\lVert s\rVert}
          {\lVert\sum_{s\in S_c} s/\lVert s\rVert\rVert},

made *after* the batch joined the supports (``T3A.forward(x, adapt=True)`` in DomainBed's
``algorithms.py``, the official code; its ``select_supports`` keeps the first ``M`` of each
class in entropy order, ties in insertion order, as here). The model runs in eval mode
(running BatchNorm statistics) and its weights do not change.

Fixed shapes: the supports are a ``(C, M, d)`` buffer with a validity mask; each step picks,
per class, the ``M`` lowest-entropy entries of the buffer and the new batch. DomainBed's
``filter_K = -1`` (keep everything) would grow without bound and is not supported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.adaptation.base import Context, TTAMethod, forward, initial_state
from tljax.losses.entropy import entropy_per_sample


def _normalize(x, axis=-1):
    # torch.nn.functional.normalize: x / max(||x||, 1e-12)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def select(supports, ent, valid, z, z_ent, z_label):
    """Adds ``z`` (``(B, d)``, entropies, pseudo-labels) to the buffer, keeping per class
    the ``M`` entries of lowest entropy (old entries before new ones on ties).

    Returns:
      The new ``(supports (C, M, d), ent (C, M), valid (C, M))``.
    """
    c, m, d = supports.shape
    cand_z = jnp.concatenate([supports.reshape(c * m, d), z.astype(supports.dtype)])
    cand_e = jnp.concatenate([ent.reshape(-1), z_ent.astype(ent.dtype)])
    cand_l = jnp.concatenate([jnp.repeat(jnp.arange(c), m), z_label])
    cand_v = jnp.concatenate([valid.reshape(-1), jnp.ones(z.shape[:1], bool)])

    def per_class(k):
        mine = cand_v & (cand_l == k)
        key = jnp.where(mine, cand_e, jnp.inf)
        # top_k of (−key): the M smallest entropies; equal keys keep index order.
        _, idx = jax.lax.top_k(-key, m)
        return cand_z[idx], cand_e[idx], mine[idx]

    return jax.vmap(per_class)(jnp.arange(c))


def prototypes(supports, valid):
    """``(C, d)`` unit class prototypes from the valid normalised supports."""
    s = _normalize(supports) * valid[..., None]
    return _normalize(jnp.sum(s, axis=1))


def make(ctx: Context, *, filter_k: int = 100, batch_stats: bool = False) -> TTAMethod:
    """T3A.

    Args:
      filter_k: ``M``, supports kept per class (DomainBed's ``filter_K``; it searches
        1, 5, 20, 50, 100).
      batch_stats: extract features with test-batch BatchNorm statistics (off in T3A).

    Raises:
      ValueError: ``filter_k < 1``, or the model has no linear ``model/head``.
    """
    if int(filter_k) < 1:
        raise ValueError(
            f"t3a: filter_k must be >= 1 (supports kept per class), got {filter_k}; "
            "DomainBed's -1 (keep all) needs an unbounded buffer and is not supported."
        )
    head = ctx.params.get("model", {}).get("head", {})
    if "kernel" not in head:
        raise ValueError("t3a needs a linear classifier head at model/head (kernel, bias).")
    m, c = int(filter_k), ctx.num_classes

    def head_logits(params, z):
        h = params["model"]["head"]
        out = z @ h["kernel"]
        return out + h["bias"] if "bias" in h else out

    def init():
        w = jnp.asarray(ctx.params["model"]["head"]["kernel"]).T  # (C, d) warm-up supports
        d = w.shape[1]
        logits = head_logits(ctx.params, w)
        buf = (
            jnp.zeros((c, m, d), w.dtype),
            jnp.zeros((c, m), jnp.float32),
            jnp.zeros((c, m), bool),
        )
        sup, ent, valid = select(*buf, w, entropy_per_sample(logits), jnp.argmax(logits, -1))
        return initial_state(ctx, extra=dict(supports=sup, ent=ent, valid=valid))

    def classify(extra, z):
        protos = prototypes(extra["supports"], extra["valid"])
        return (z.astype(jnp.float32) @ protos.T.astype(jnp.float32)).astype(jnp.float32)

    def features(state, x):
        _, out = forward(ctx, state.params, state.rest, x, batch_stats=batch_stats)
        return out["features"]

    def update(state, x, rng=None):
        z = features(state, x)
        logits = head_logits(state.params, z).astype(jnp.float32)
        e = state.extra
        sup, ent, valid = select(
            e["supports"],
            e["ent"],
            e["valid"],
            z,
            entropy_per_sample(logits),
            jnp.argmax(logits, -1),
        )
        extra = dict(supports=sup, ent=ent, valid=valid)
        metrics = {"supports": jnp.sum(valid).astype(jnp.float32)}
        return state.replace(extra=extra, step=state.step + 1), classify(extra, z), metrics

    def predict(state, x):
        return classify(state.extra, features(state, x))

    return TTAMethod("t3a", init, update, predict, dict(filter_k=m, batch_stats=batch_stats), False)

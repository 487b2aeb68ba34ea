"""Fine-tuning regularizers: L2-SP, DELTA feature-map distance, LwF distillation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def param_path(path: tuple) -> str:
    """``'backbone/layer1/conv/kernel'`` for a pytree key path; a trailing NNX ``.value`` is
    dropped (the naming rule of the freezing config)."""
    names = [_key_name(k) for k in path]
    if names and names[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        names = names[:-1]
    return "/".join(names)


def l2sp(
    params: PyTree,
    init_params: PyTree,
    *,
    alpha: float,
    beta: float,
    shared_mask: PyTree | Callable[[str], bool],
) -> jax.Array:
    """L2-SP (Li, Grandvalet & Davoine, ICML 2018).

    ``Ω(w) = α/2 · ||w_S − w_S⁰||² + β/2 · ||w_new||²``: parameters shared with the pretrained
    model (``S``) are pulled towards their starting point ``w⁰``, new parameters (e.g. the
    new head) get plain weight decay. ``w⁰`` is under ``stop_gradient``. TLlib's
    ``SPRegularization``/``L2Regularization`` are the two terms with the same ``1/2``.

    Args:
      params: the current parameters (any pytree, e.g. an ``nnx.State`` or a dict).
      init_params: the starting point (pretrained weights after loading), with the same tree
        structure as ``params``; its leaves at non-shared positions are ignored.
      alpha: weight α of the starting-point term.
      beta: weight β of the decay on new parameters.
      shared_mask: which parameters are shared, either a pytree of Python bools with the
        structure of ``params`` or a prefix of it (like an optax mask; a bool at a subtree
        applies to all its leaves), or a predicate on path strings such as
        ``lambda p: p.startswith("backbone/")``. Paths join the keys with ``/`` and drop a
        trailing NNX ``value``, as in the freezing rules.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``init_params`` or ``shared_mask`` do not match the structure of ``params``,
        or a mask entry is not a concrete bool.
    """
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
    try:
        init_leaves = treedef.flatten_up_to(init_params)
    except (ValueError, TypeError) as e:
        raise ValueError(f"l2sp: init_params must have the tree structure of params: {e}") from e
    if callable(shared_mask):
        flags = [bool(shared_mask(param_path(path))) for path, _ in leaves_with_path]
    else:
        try:
            per_leaf = jax.tree.map(
                lambda m, sub: jax.tree.map(lambda _: m, sub), shared_mask, params
            )
            flags = treedef.flatten_up_to(per_leaf)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"l2sp: shared_mask must be a predicate on path strings or a pytree of bools "
                f"with the structure (or a prefix) of params: {e}"
            ) from e
        for (path, _), flag in zip(leaves_with_path, flags, strict=True):
            if not isinstance(flag, (bool, jnp.bool_)):
                raise ValueError(
                    f"l2sp: shared_mask entries must be Python bools, got {flag!r} at "
                    f"{param_path(path)!r}."
                )
        flags = [bool(f) for f in flags]
    shared_sq, new_sq = [], []
    for (_, w), w0, is_shared in zip(leaves_with_path, init_leaves, flags, strict=True):
        if is_shared:
            shared_sq.append(jnp.sum((w - jax.lax.stop_gradient(w0)) ** 2))
        else:
            new_sq.append(jnp.sum(w**2))
    return 0.5 * alpha * sum(shared_sq, 0.0) + 0.5 * beta * sum(new_sq, 0.0)


def _delta_layer(f: jax.Array, f0: jax.Array, w: jax.Array | None) -> jax.Array:
    if f.shape != f0.shape or f.ndim < 2:
        raise ValueError(
            "delta_feature_loss: feature maps must be (batch, ..., channels) with equal shapes, "
            f"got {tuple(f.shape)} and {tuple(f0.shape)}."
        )
    diff_sq = (f - jax.lax.stop_gradient(f0)) ** 2
    if w is None:
        return 0.5 * jnp.sum(diff_sq)
    channels = f.shape[-1]
    if w.shape != (channels,):
        raise ValueError(
            f"delta_feature_loss: channel_weights must have shape ({channels},) for feature maps "
            f"{tuple(f.shape)} (channels last), got {tuple(w.shape)}."
        )
    spatial = diff_sq.size // (f.shape[0] * channels)
    per_channel = jnp.sum(diff_sq.reshape(f.shape[0], -1, channels), axis=1)  # (batch, C)
    weights = jax.lax.stop_gradient(w)
    return 0.5 * jnp.sum(channels * weights * per_channel) / spatial


def delta_feature_loss(
    feats: jax.Array | Sequence[jax.Array],
    feats0: jax.Array | Sequence[jax.Array],
    channel_weights: jax.Array | Sequence[jax.Array | None] | None = None,
) -> jax.Array:
    """DELTA feature-map regularizer (Li et al., ICLR 2019), as TLlib.

    Per layer, with ``Δ = FM(w, x) − sg(FM(w⁰, x))`` channels-last ``(B, H, W, C)`` (or
    ``(B, C)``, ``HW = 1``):

    * ``channel_weights=None``: ``0.5 · Σ_{b,h,w,c} Δ²`` (TLlib's ``BehavioralRegularization``,
      the paper's variant without attention);
    * with attention weights ``a`` (``(C,)``, summing to 1; TLlib: a softmax of the accuracy drops
      when each channel is removed): ``0.5 · Σ_b Σ_c C·a_c · ||Δ_bc||² / (HW)`` (TLlib's
      ``AttentionBehavioralRegularization``).

    The two TLlib normalisations differ (by ``HW``) and both sum over the batch rather than
    averaging; we keep them so TLlib's trade-offs carry over. Layers are summed.

    Args:
      feats: feature map(s) of the model being fine-tuned.
      feats0: the same layer(s) of the frozen starting model on the same inputs (detached here).
      channel_weights: ``None``, or one ``(C,)`` array (or ``None``) per layer (detached).

    Returns:
      A scalar.

    Raises:
      ValueError: on mismatched shapes or layer counts.
    """
    single = hasattr(feats, "shape")
    fs = [feats] if single else list(feats)
    f0s = [feats0] if single else list(feats0)
    if channel_weights is None:
        ws = [None] * len(fs)
    elif single:
        ws = [channel_weights]
    else:
        ws = list(channel_weights)
    if not fs or len(f0s) != len(fs) or len(ws) != len(fs):
        raise ValueError(
            f"delta_feature_loss: need matching non-empty layer lists, got {len(fs)} feature "
            f"maps, {len(f0s)} reference maps and {len(ws)} channel weights."
        )
    return sum((_delta_layer(f, f0, w) for f, f0, w in zip(fs, f0s, ws, strict=True)), 0.0)


def lwf_distillation(
    logits_new: jax.Array, logits_old: jax.Array, *, temperature: float = 2.0
) -> jax.Array:
    """Learning without Forgetting distillation (Li & Hoiem, ECCV 2016 / TPAMI 2017).

    ``L = 1/B Σ_i KL(softmax(sg(z^old_i)/T) || softmax(z^new_i/T))`` (TLlib's
    ``KnowledgeDistillationLoss``: ``KLDivLoss(reduction="batchmean")``, no ``T²`` factor). The
    paper writes the cross-entropy ``−Σ y'_o log ŷ'_o``, which equals this KL plus the
    teacher's entropy: same gradient, and the KL is 0 when the heads agree.

    Args:
      logits_new: ``(batch, C)`` old-task logits of the model being trained.
      logits_old: ``(batch, C)`` recorded logits of the original model (no gradient).
      temperature: ``T > 0`` (the paper uses 2).

    Returns:
      A scalar.

    Raises:
      ValueError: on mismatched shapes or a non-positive temperature.
    """
    if logits_new.ndim != 2 or logits_new.shape != logits_old.shape:
        raise ValueError(
            "lwf_distillation: expected two (batch, C) logit arrays of the same shape, got "
            f"{tuple(logits_new.shape)} and {tuple(logits_old.shape)}."
        )
    if not temperature > 0:
        raise ValueError(f"lwf_distillation: temperature must be > 0, got {temperature!r}.")
    log_q = jax.nn.log_softmax(logits_new / temperature, axis=-1)
    log_p = jax.nn.log_softmax(jax.lax.stop_gradient(logits_old) / temperature, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return jnp.mean(kl)

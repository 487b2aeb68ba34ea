r"""EATA: efficient anti-forgetting test-time adaptation (Niu et al., ICML 2022), and ETA.

Tent's entropy minimisation on the BatchNorm affine parameters (the same freezing rules,
:func:`tljax.adaptation.base.batch_norm_affine_rules`; BatchNorm on batch statistics),
with three changes. On a test batch with predictions ``p_i`` and entropies ``H_i``:

1. *reliable samples* (Eqn. 3): only samples with ``H_i < E_0`` take part;
2. *non-redundant samples* (Eqn. 5): of those, only samples whose ``p_i`` has cosine
   similarity ``|cos(p_i, m)| < ε`` to ``m``, a moving average of the probabilities of the
   samples selected so far (Eqn. 4: ``m ← 0.9 m + 0.1 · mean_selected p``; the first
   batch has no ``m``, so no redundancy filter, and ``m`` starts as the mean of its
   reliable samples);
3. *re-weighting* (Eqn. 6): ``S(x) = 1 / exp(H(x) − E_0)`` (no gradient through it);

.. math:: L = \frac{1}{|S|}\sum_{i \in S} S(x_i)\,H_i
          + \beta \sum_k F_k (\theta_k - \theta_k^0)^2

with ``S`` the selected samples, ``θ^0`` the source weights and ``F`` the diagonal Fisher
information (Eqn. 9): the mean over batches of the squared gradient of the batch-mean
cross-entropy of the model's own predictions (pseudo-labels ``argmax p``), computed once
before adaptation. A batch with no selected sample makes no update (the official code
skips ``loss.backward()``; the optimizer state stays). Predictions are those of the
forward pass whose loss is minimised, before the update. ETA is EATA with ``β = 0`` (no
Fisher term): ``fisher_alpha=0`` or the registered name ``eta``.

Constants and their sources (``github.com/mr-eggplant/EATA``):

* ``E_0 = 0.4 · ln C``: ``main.py`` ``--e_margin`` default ``math.log(1000) * 0.40``
  (``e_margin_frac``);
* ``ε = 0.05``: ``main.py`` ``--d_margin`` (``d_margin``); with ``C = 10`` classes a
  confident prediction has cosine ≈ 0.3 to a spread average, so ``0.05`` selects almost
  nothing: Döbler et al.'s benchmark (``mariodoebler/test-time-adaptation``,
  ``cfgs/cifar10_c/eata.yaml``) uses ``D_MARGIN: 0.4``, ``FISHER_ALPHA: 1.0``, Adam 1e-3
  for CIFAR-10-C;
* ``β = 2000``: ``--fisher_alpha`` (ImageNet; ``fisher_alpha``);
* the moving-average momentum 0.9: ``eata.py``, ``update_model_probs``;
* the Fisher from 2,000 clean (in-distribution) test images' pseudo-labels
  (``--fisher_size``), with the BatchNorm layers already on batch statistics; the
  official optimiser SGD, momentum 0.9, lr 2.5e-4 (batch 64, ImageNet).

Here the Fisher comes either from ``fisher_x`` (unlabelled inputs given to :func:`make`,
e.g. clean held-out images as the paper; split into batches of ``fisher_batch_size``) or,
when ``fisher_x`` is None, from the first test batch the method adapts on (computed in the
first step of an episode, kept in ``AdaptState.extra``): a source-free default, but one
batch of shifted data estimates ``F`` worse than 2,000 clean images.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tljax import optim
from tljax.adaptation.base import (
    AdaptState,
    Context,
    TTAMethod,
    batch_norm_affine_rules,
    forward,
    initial_state,
)
from tljax.losses.entropy import entropy_per_sample

PROBS_MOMENTUM = 0.9  # eata.py, update_model_probs


def select(
    logits: jax.Array,
    avg_probs: jax.Array,
    has_avg: jax.Array,
    *,
    e_margin: float,
    d_margin: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """EATA's sample selection and weights on one batch.

    Args:
      logits: ``(B, C)``.
      avg_probs: ``(C,)`` the moving average ``m`` of selected probabilities.
      has_avg: bool scalar: ``m`` exists (False before the first selected sample).
      e_margin: ``E_0``.
      d_margin: ``ε``.

    Returns:
      ``(selected, weights, entropies)``: a ``(B,)`` bool mask (reliable and, when
      ``has_avg``, non-redundant), ``1 / exp(H − E_0)`` and ``H``, each ``(B,)``.
    """
    ent = entropy_per_sample(logits)
    reliable = ent < e_margin
    p = jax.nn.softmax(logits, axis=-1)
    # torch.nn.functional.cosine_similarity: x·y / max(‖x‖‖y‖, 1e-8)
    norms = jnp.linalg.norm(p, axis=-1) * jnp.linalg.norm(avg_probs)
    cos = p @ avg_probs / jnp.maximum(norms, 1e-8)
    novel = jnp.logical_or(jnp.abs(cos) < d_margin, jnp.logical_not(has_avg))
    weights = jnp.exp(-(jax.lax.stop_gradient(ent) - e_margin))
    return reliable & novel, weights, ent


def update_avg_probs(avg_probs, has_avg, probs, selected):
    """Eqn. 4: ``m ← 0.9 m + 0.1 mean_S p`` (``m = mean_S p`` when there is none yet);
    unchanged when nothing is selected. Returns ``(avg_probs, has_avg)``."""
    count = jnp.sum(selected)
    mean = jnp.sum(probs * selected[:, None], 0) / jnp.maximum(count, 1)
    moved = jnp.where(has_avg, PROBS_MOMENTUM * avg_probs + (1 - PROBS_MOMENTUM) * mean, mean)
    return jnp.where(count > 0, moved, avg_probs), jnp.logical_or(has_avg, count > 0)


def fisher_penalty(params, anchor, fisher, alpha: float) -> jax.Array:
    """``α Σ_k F_k (θ_k − θ_k^0)²`` over all leaves (frozen leaves have ``F = 0``)."""
    terms = jax.tree.map(lambda f, p, a: jnp.sum(f * (p - a) ** 2), fisher, params, anchor)
    return alpha * sum(jax.tree.leaves(terms), jnp.zeros((), jnp.float32))


def _masked(frozen, params):
    return jax.tree.map(lambda f, p: jax.lax.stop_gradient(p) if f else p, frozen, params)


def fisher_of_batch(ctx: Context, frozen, params, rest, x):
    """The squared gradient of the batch-mean cross-entropy of the model's own hard
    predictions (BatchNorm on batch statistics), zero on frozen leaves."""

    def ce(params):
        logits, _ = forward(ctx, _masked(frozen, params), rest, x, batch_stats=True)
        labels = jnp.argmax(jax.lax.stop_gradient(logits), -1)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    grads = jax.grad(ce)(params)
    return jax.tree.map(lambda f, g: jnp.zeros_like(g) if f else g**2, frozen, grads)


def fisher_information(ctx: Context, frozen, x, batch_size: int = 64):
    """EATA's diagonal Fisher: :func:`fisher_of_batch` averaged over the batches of ``x``
    (a last, smaller batch included).

    Raises:
      ValueError: ``x`` is empty.
    """
    n = int(x.shape[0])
    if n == 0 or batch_size < 1:
        raise ValueError(f"fisher_x: need at least one example, got {n} (batch {batch_size}).")
    fn = jax.jit(lambda x: fisher_of_batch(ctx, frozen, ctx.params, ctx.rest, x))
    total, count = None, 0
    for lo in range(0, n, batch_size):
        f = fn(jnp.asarray(np.asarray(x[lo : lo + batch_size])))
        total = f if total is None else jax.tree.map(jnp.add, total, f)
        count += 1
    return jax.tree.map(lambda t: t / count, total)


def make(
    ctx: Context,
    *,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    e_margin_frac: float = 0.4,
    d_margin: float = 0.05,
    fisher_alpha: float = 2000.0,
    fisher_x=None,
    fisher_batch_size: int = 64,
    name: str = "eata",
) -> TTAMethod:
    """EATA (ETA with ``fisher_alpha=0``).

    Args:
      lr, optimizer, momentum, weight_decay: as :mod:`tljax.adaptation.tent` (Adam 1e-3,
        Döbler et al.'s CIFAR setting; the paper's ImageNet one is SGD 2.5e-4).
      e_margin_frac: ``E_0 = e_margin_frac · ln C``.
      d_margin: ``ε`` of the redundancy filter (``<= 0`` drops every sample after the
        first batch; ``> 1`` turns the filter off).
      fisher_alpha: ``β``; 0 = ETA (no Fisher computed).
      fisher_x: inputs for the Fisher (as the stream's inputs); None = the first test
        batch of each episode.
      fisher_batch_size: batch size over ``fisher_x``.
      name: the method's name in results.

    Raises:
      ValueError: no BatchNorm layer, or a negative ``fisher_alpha`` / ``e_margin_frac``.
    """
    if fisher_alpha < 0 or e_margin_frac <= 0:
        raise ValueError(
            f"{name}: need fisher_alpha >= 0 and e_margin_frac > 0, got "
            f"fisher_alpha={fisher_alpha}, e_margin_frac={e_margin_frac}."
        )
    e_margin = e_margin_frac * math.log(ctx.num_classes)
    tx, labels, report = optim.make_optimizer(
        ctx.params,
        batch_norm_affine_rules(ctx),
        optimizer=optimizer,
        schedule=optax.constant_schedule(lr),
        momentum=momentum,
        nesterov=False,
        weight_decay=weight_decay,
    )
    frozen = optim.frozen_mask(labels)
    use_fisher = fisher_alpha > 0
    given = use_fisher and fisher_x is not None
    fisher0 = jax.tree.map(jnp.zeros_like, ctx.params)
    if given:
        fisher0 = fisher_information(ctx, frozen, fisher_x, fisher_batch_size)

    def init() -> AdaptState:
        extra = {
            "avg_probs": jnp.zeros((ctx.num_classes,), jnp.float32),
            "has_avg": jnp.zeros((), bool),
        }
        if use_fisher:
            extra["fisher"] = fisher0
        return initial_state(ctx, opt_state=tx.init(ctx.params), extra=extra)

    def update(state: AdaptState, x, rng=None):
        extra = dict(state.extra)
        if use_fisher and not given:
            extra["fisher"] = jax.lax.cond(
                state.step == 0,
                lambda: fisher_of_batch(ctx, frozen, ctx.params, ctx.rest, x),
                lambda: extra["fisher"],
            )

        def loss_fn(params):
            logits, _ = forward(ctx, _masked(frozen, params), state.rest, x, batch_stats=True)
            sel, weights, ent = select(
                logits, extra["avg_probs"], extra["has_avg"], e_margin=e_margin, d_margin=d_margin
            )
            count = jnp.sum(sel)
            loss = jnp.sum(jnp.where(sel, weights * ent, 0.0)) / jnp.maximum(count, 1)
            penalty = jnp.zeros((), jnp.float32)
            if use_fisher:
                penalty = fisher_penalty(params, ctx.params, extra["fisher"], fisher_alpha)
            return loss + penalty, (logits, sel, penalty)

        (loss, (logits, sel, penalty)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        count = jnp.sum(sel)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = optax.apply_updates(state.params, updates)
        act = count > 0  # no selected sample: no step, the optimizer state stays
        params = jax.tree.map(
            lambda f, old, p: old if f else jnp.where(act, p, old), frozen, state.params, new
        )
        opt_state = jax.tree.map(lambda a, b: jnp.where(act, a, b), opt_state, state.opt_state)
        logits = jax.lax.stop_gradient(logits)
        reliable = entropy_per_sample(logits) < e_margin
        extra["avg_probs"], extra["has_avg"] = update_avg_probs(
            extra["avg_probs"], extra["has_avg"], jax.nn.softmax(logits, -1), sel
        )
        state = state.replace(params=params, opt_state=opt_state, extra=extra, step=state.step + 1)
        metrics = {
            "loss": loss,
            "fisher_penalty": penalty,
            "reliable": jnp.mean(reliable.astype(jnp.float32)),
            "selected": jnp.mean(sel.astype(jnp.float32)),
        }
        return state, logits, metrics

    def predict(state: AdaptState, x):
        return forward(ctx, state.params, state.rest, x, batch_stats=True)[0]

    hp = dict(
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        e_margin=e_margin,
        d_margin=d_margin,
        fisher_alpha=fisher_alpha,
        fisher=("fisher_x" if given else "first batch") if use_fisher else "none",
        fisher_examples=int(len(fisher_x)) if given else 0,
        trained=sorted(p for p, (_, r) in report.items() if r is not None),
    )
    return TTAMethod(name, init, update, predict, hp)


def make_eta(ctx: Context, **hparams) -> TTAMethod:
    """ETA: EATA without the Fisher regulariser (``fisher_alpha=0``)."""
    if "fisher_alpha" in hparams or "fisher_x" in hparams:
        raise ValueError("eta: no Fisher term; use 'eata' for fisher_alpha/fisher_x.")
    return make(ctx, fisher_alpha=0.0, name="eta", **hparams)

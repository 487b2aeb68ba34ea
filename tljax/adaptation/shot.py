r"""SHOT-IM: source hypothesis transfer by information maximisation (Liang et al., ICML 2020),
online.

The hypothesis (the classifier head ``model/head``) is frozen; the feature extractor
(backbone and bottleneck) minimises on each test batch

.. math:: L = \frac1B\sum_i H(p_i) - \lambda\, H(\bar p), \qquad \bar p = \frac1B\sum_i p_i

(entropy minimisation plus diversity, ``λ = 1`` in the paper and code,
:func:`tljax.losses.entropy.information_maximization` for ``λ = 1``): ``shot_im``. This is
the online (one pass over a stream) form used as a test-time baseline.

``shot`` adds SHOT's self-supervised pseudo-labels, ``+ β·CE(logits, ŷ)`` (``β = 0.3``):
``ŷ`` from :func:`cluster_labels` (``obtain_label`` of the official code: weighted k-means
centroids in the cosine geometry of the features with a constant 1 appended, one hard
refinement round, only classes predicted at least once). SHOT computes them once per epoch
over the whole target set with the frozen current model; here they are computed on each
test batch from the same forward pass (detached), the online form. BatchNorm layers
normalise with the batch's statistics (SHOT trains in ``train()`` mode). The predictions for
a batch are those of the forward pass that computes the loss. SHOT's optimiser: SGD,
momentum 0.9, weight decay 1e-3, lr 1e-2 (x0.1 on a pretrained backbone).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from tljax.adaptation.base import Context, TTAMethod, gradient_method
from tljax.losses.entropy import entropy

HEAD = r"^model/head/"


def im_loss(logits, diversity_weight: float = 1.0):
    """``mean_i H(p_i) − λ H(mean_i p_i)`` and its two terms (``log p̄`` as a
    ``logsumexp`` of the log-probabilities, finite for any logits)."""
    ent = entropy(logits)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    log_mean = jax.nn.logsumexp(log_p, axis=0) - math.log(logits.shape[0])
    div = -jnp.sum(jnp.exp(log_mean) * log_mean)
    return ent - diversity_weight * div, {"entropy_term": ent, "diversity": div}


def _unit(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cluster_labels(features, logits, rounds: int = 1):
    """SHOT's pseudo-labels (``obtain_label``, ``distance="cosine"``, ``threshold=0``).

    ``f_i = [z_i, 1] / ‖[z_i, 1]‖``; centroids ``c_k = Σ_i p_ik f_i / (Σ_i p_ik + 1e-8)``;
    ``ŷ_i = argmin_k cos-distance(f_i, c_k)`` over the classes some ``argmax p_i`` picks;
    then ``rounds`` times: centroids from the hard labels, reassign. A class left without
    members has a zero centroid, at cosine distance 1 from everything here (the reference's
    ``scipy`` ``cdist`` gives NaN there, and ``argmin`` then picks that class for all).

    Returns:
      ``(B,)`` int32 labels.
    """
    f = features.astype(jnp.float32)
    f = _unit(jnp.concatenate([f, jnp.ones((f.shape[0], 1), f.dtype)], axis=1))
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    k = logits.shape[1]
    present = jnp.sum(jax.nn.one_hot(jnp.argmax(p, -1), k), 0) > 0

    def centroids(a):
        return (a.T @ f) / (1e-8 + jnp.sum(a, 0)[:, None])

    def assign(c):
        d = 1.0 - f @ _unit(c).T
        return jnp.argmin(jnp.where(present, d, jnp.inf), axis=-1)

    labels = assign(centroids(p))
    for _ in range(rounds):
        labels = assign(centroids(jax.nn.one_hot(labels, k)))
    return labels.astype(jnp.int32)


def make_shot(ctx: Context, *, beta: float = 0.3, **kwargs) -> TTAMethod:
    """SHOT (information maximisation + ``beta`` x pseudo-label cross-entropy), online.

    Args:
      beta: weight of the pseudo-label cross-entropy (SHOT's ``cls_par``, 0.3).
      **kwargs: as :func:`make`.
    """
    return make(ctx, beta=beta, **kwargs)


def make(
    ctx: Context,
    *,
    lr: float = 1e-3,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    diversity_weight: float = 1.0,
    train: str = ".*",
    beta: float = 0.0,
) -> TTAMethod:
    """SHOT-IM, online.

    Args:
      lr: learning rate.
      optimizer: ``"sgd"`` (SHOT) or ``"adam"``.
      momentum: SGD momentum.
      weight_decay: L2 decay.
      diversity_weight: ``λ``.
      train: regex of the parameters adapted (besides the frozen head and the method's
        own networks); the default adapts the whole feature extractor.
      beta: weight of SHOT's pseudo-label cross-entropy (0: SHOT-IM).
    """

    def objective(logits, out):
        loss, metrics = im_loss(logits, diversity_weight)
        if beta:
            labels = cluster_labels(
                jax.lax.stop_gradient(out["features"]), jax.lax.stop_gradient(logits)
            )
            ce = -jnp.mean(
                jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], axis=1)
            )
            loss = loss + beta * ce
            metrics = {**metrics, "pseudo_ce": ce}
        return loss, metrics

    rules = [(HEAD, None), (r"^method/", None), (train, 1.0), (".*", None)]
    return gradient_method(
        ctx,
        "shot" if beta else "shot_im",
        objective,
        rules,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_stats=True,
        hparams=dict(
            lr=lr,
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=weight_decay,
            diversity_weight=diversity_weight,
            **({"beta": beta} if beta else {}),
        ),
    )

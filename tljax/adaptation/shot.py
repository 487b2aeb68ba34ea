r"""SHOT-IM: source hypothesis transfer by information maximisation (Liang et al., ICML 2020),
online.

The hypothesis (the classifier head ``model/head``) is frozen; the feature extractor
(backbone and bottleneck) minimises on each test batch

.. math:: L = \frac1B\sum_i H(p_i) - \lambda\, H(\bar p), \qquad \bar p = \frac1B\sum_i p_i

(entropy minimisation plus diversity, ``λ = 1`` in the paper and code,
:func:`tljax.losses.entropy.information_maximization` for ``λ = 1``). This is the online
(one pass over a stream) form used as a test-time baseline; SHOT's self-supervised
pseudo-labelling by weighted k-means is not done here (``docs/tta.md``). BatchNorm layers
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


def make(
    ctx: Context,
    *,
    lr: float = 1e-3,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    diversity_weight: float = 1.0,
    train: str = ".*",
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
    """

    def objective(logits, out):
        return im_loss(logits, diversity_weight)

    rules = [(HEAD, None), (r"^method/", None), (train, 1.0), (".*", None)]
    return gradient_method(
        ctx,
        "shot_im",
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
        ),
    )

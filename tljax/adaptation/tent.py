r"""Tent: fully test-time adaptation by entropy minimisation (Wang et al., ICLR 2021).

On each unlabelled test batch, with every BatchNorm layer normalising with the batch's
statistics, minimise the mean prediction entropy

.. math:: L(x) = \frac1B \sum_i H(p_i), \qquad H(p) = -\sum_c p_c \log p_c,

with respect to the BatchNorm affine parameters (scale ``γ``, bias ``β``) only; every other
parameter is frozen (an optax mask from :func:`tljax.optim.make_optimizer`). The
predictions for a batch are those of the forward pass that computes the loss (before the
update), as in the official code (``tent.py``: ``forward_and_adapt``). The paper's
optimisers: Adam, lr 1e-3, for CIFAR; SGD, momentum 0.9, lr 2.5e-4 (batch 64) for
ImageNet. The running statistics are not used (the official code sets
``track_running_stats=False``).
"""

from __future__ import annotations

from tljax.adaptation.base import Context, TTAMethod, batch_norm_affine_rules, gradient_method
from tljax.losses.entropy import entropy


def make(
    ctx: Context,
    *,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> TTAMethod:
    """Tent.

    Args:
      lr: learning rate.
      optimizer: ``"adam"`` (the paper's CIFAR setting) or ``"sgd"``.
      momentum: SGD momentum.
      weight_decay: L2 decay.

    Raises:
      ValueError: the model has no BatchNorm layer.
    """

    def objective(logits, out):
        loss = entropy(logits)
        return loss, {}

    return gradient_method(
        ctx,
        "tent",
        objective,
        batch_norm_affine_rules(ctx),
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_stats=True,
        hparams=dict(lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay),
    )

r"""Plain fine-tuning: cross-entropy on the labelled batch, with a BatchNorm switch.

.. math::
   L(w) = \mathbb{E}_s[\ell(C(F(x)), y)]

The same objective as ``source_only``; what it adds is ``bn_stats``: ``"adapt"`` trains
BatchNorm as usual (batch statistics, running statistics updated on the new data),
``"frozen"`` keeps the pretrained running statistics and normalises with them
(:func:`tljax.bn.use_running_statistics`), the usual advice when fine-tuning on small
data. Which parameters train (feature extraction, partial freezing, gradual unfreezing,
discriminative learning rates) is set by ``optim.freeze``, not here; see
``configs/transfer/``. Only the source batch is forwarded.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.methods import _steps
from tljax.methods.base import Method, no_params, records_hparams
from tljax.methods.l2sp import check_bn_stats


@records_hparams
def make(*, bn_stats: str = "adapt") -> Method:
    """Builds plain fine-tuning.

    Args:
      bn_stats: ``"adapt"`` or ``"frozen"`` BatchNorm statistics during training.

    Raises:
      ValueError: for another ``bn_stats``.
    """
    check_bn_stats(bn_stats, "finetune")

    def loss(module, *, src, tgt, rng, step):
        del module, src, tgt, rng, step
        return jnp.zeros((), jnp.float32), {}

    return Method(
        name="finetune",
        init=no_params,
        loss=loss,
        train_step=_steps.finetune_step(name="finetune", bn_stats=bn_stats),
        needs_target=False,
    )

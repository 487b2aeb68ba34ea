r"""M³SDA: moment matching for multi-source domain adaptation (Peng et al., ICCV 2019).

.. math::
   \min_{F,C}\; \tfrac1K\textstyle\sum_k R_k + \lambda\, MD^2(D_1,\dots,D_K, D_T)

with the moment distance of the paper's code (:func:`tljax.losses.dg_alignment.
m3sda_moment_distance`: first and higher central moments of the features, every source
against the target and every pair of sources). This is the moment-matching part of
M³SDA with one shared classifier; the paper's per-source classifiers and their weighted
vote (and M³SDA-β's discrepancy step) are not included. Runs on ``msda/<set>`` tasks.
The trade-off ``λ`` is the config's ``method.weight`` (the paper's code hand-tunes it per
task, on its own distance scale). Too large a ``λ`` has a trivial optimum: constant
features match every moment (distance 0) at chance accuracy. On ``msda/digits_styles``
with LeNet that happens from λ = 0.3 on (``configs/dg.py`` uses 0.03, picked by
training-domain validation); the logged ``m3sda/feature_std`` (mean per-feature standard
deviation over the batch) falls to 0 when it does, and training-domain validation drops
to chance, so that rule never picks a collapsed run.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.dg_alignment import m3sda_moment_distance
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams

NORMALIZATIONS = ("code", "paper")


@records_hparams
def make(*, moments: int = 2, normalization: str = "code") -> Method:
    """Builds M³SDA's moment matching.

    Args:
      moments: the highest moment order ``k`` matched (the paper's code: 2).
      normalization: ``"code"`` or ``"paper"`` (see ``m3sda_moment_distance``).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"m3sda: normalization={normalization!r} not in {NORMALIZATIONS}.")
    if int(moments) < 1:
        raise ValueError(f"m3sda: moments must be >= 1, got {moments!r}.")

    def init(rngs, info):
        del rngs
        return D.DomainCount(D.require_domains(info, "m3sda", minimum=1))

    def objective(ctx, batch) -> Losses:
        k = ctx.net.method.num_domains
        src, tgt = D.forward(ctx, batch, with_target=True)
        labels = batch["source"]["label"]
        feats = D.per_domain(src.features.astype(jnp.float32), k)
        md = m3sda_moment_distance(
            [feats[i] for i in range(k)],
            tgt.features.astype(jnp.float32),
            k=int(moments),
            normalization=normalization,
        )
        risks = D.domain_risks(src.logits, labels, k)
        # Collapse diagnostic: the moment distance is 0 for constant features, a trivial
        # solution a large λ finds (docs/domain_generalization.md); this goes to 0 with it.
        every = jnp.concatenate([src.features, tgt.features]).astype(jnp.float32)
        metrics = {"feature_std": jnp.mean(jnp.std(every, axis=0))}
        return Losses(jnp.mean(risks), md, D.accuracy(src.logits, labels), metrics)

    return Method(
        name="m3sda", init=init, train_step=own_step(objective, name="m3sda"), multi_domain=True
    )

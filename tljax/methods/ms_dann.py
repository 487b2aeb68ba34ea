r"""Multi-source DANN: one domain classifier over the ``K`` labelled sources and the
unlabelled target (Zhao et al., NeurIPS 2018, MDAN's "soft" multi-domain adversarial
baseline; the (K+1)-way form of Ganin et al.'s DANN).

.. math::
   \min_{F,C}\max_{D}\; \tfrac1K\textstyle\sum_k R_k
   - \lambda\,\mathrm{mean}_i\,\ell_{CE}\big(D(F(x_i)), k_i\big),
   \qquad k_i \in \{0,\dots,K-1\}\ (\text{sources}),\ K\ (\text{target})

The discriminator learns to tell every source and the target apart; the gradient
reversal layer (warm start as :mod:`tljax.methods.dann`) makes the features
indistinguishable across all ``K + 1`` domains, which aligns each source with the target
and the sources with each other. The target batch is as large as each source batch, so
the target is one class among ``K + 1``. Runs on ``msda/<set>`` tasks. The single-source
"source-combine" baseline is :mod:`tljax.methods.dann` on the same task (sources pooled).
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.dg import domain_adversarial_ce
from tljax.losses.grl import gradient_reversal
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams
from tljax.methods.dg_dann import DomainClassifier, check_schedule, coefficient


@records_hparams
def make(
    *,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    grl_schedule: str = "warm_start",
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds multi-source DANN (discriminator defaults as :mod:`tljax.methods.dann`).

    Args:
      hidden: hidden widths of the discriminator.
      batch_norm: BatchNorm in the discriminator.
      grl_schedule, grl_hi, grl_alpha, grl_max_iters: the GRL coefficient (see
        :mod:`tljax.methods.dg_dann`).
    """
    check_schedule(grl_schedule, "ms_dann")

    def init(rngs, info):
        k = D.require_domains(info, "ms_dann", minimum=1)
        return DomainClassifier(
            info.feature_dim,
            k,
            k + 1,
            tuple(hidden),
            batch_norm=batch_norm,
            num_classes=None,
            rngs=rngs,
        )

    def objective(ctx, batch) -> Losses:
        module = ctx.net.method
        k = module.num_domains
        src, tgt = D.forward(ctx, batch, with_target=True)
        labels = batch["source"]["label"]
        domains = jnp.concatenate(
            [batch["source"]["domain"], jnp.full((tgt.features.shape[0],), k, jnp.int32)]
        )
        coeff = coefficient(
            ctx.step, schedule=grl_schedule, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        f = jnp.concatenate([src.features, tgt.features]).astype(jnp.float32)
        d = module.disc(gradient_reversal(f, coeff)).astype(jnp.float32)
        adv = domain_adversarial_ce(d, domains)
        risks = D.domain_risks(src.logits, labels, k)
        return Losses(
            jnp.mean(risks),
            adv,
            D.accuracy(src.logits, labels),
            {"domain_acc": D.accuracy(d, domains), "grl_coeff": coeff},
        )

    return Method(
        name="ms_dann", init=init, train_step=own_step(objective, name="ms_dann"), multi_domain=True
    )

r"""DANN over several training domains, DomainBed's ``DANN`` (Ganin et al., JMLR 2016) and,
with ``conditional=True``, ``CDANN`` (Li et al., ECCV 2018).

.. math::
   \min_{F,C}\max_{D}\; \tfrac1K\textstyle\sum_k R_k
   - \lambda\,\textstyle\sum_i w_i\,\ell_{CE}\big(D(F(x_i) [+ E(y_i)]), k_i\big)

A ``K``-way domain classifier ``D`` (an MLP, DomainBed: width 256, no BatchNorm here by
default) predicts which training domain each example comes from; the features are trained
to confuse it. CDANN conditions the discriminator on the class: its input is the feature
plus a learned class embedding ``E(y)`` (DomainBed's ``class_embeddings``), and the loss
is class-balanced, ``w_i = 1/(n_{y_i}·C)`` (:func:`tljax.losses.dg.cdann_class_weights`);
DANN uses the plain mean.

Where DomainBed alternates discriminator and generator steps with two Adam optimizers,
tljax uses the gradient reversal layer of :mod:`tljax.methods.dann` (one update of
everything per step; the discriminator minimises the loss, the features get ``−λ`` times
its gradient), with ``λ`` warmed up as tljax's DANN (``grl_schedule="warm_start"``,
which keeps small discriminators from collapsing seeds, ``docs/seeds.md``) or constant
(``"constant"``, DomainBed's). DomainBed's ``lambda``: default 1, random search
``10^U(-2, 2)`` — here ``grl_hi``.

Multi-source DA with an unlabelled target is :mod:`tljax.methods.ms_dann` (the same
discriminator over ``K + 1`` domains).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from tljax.losses.dg import cdann_class_weights, domain_adversarial_ce
from tljax.losses.grl import gradient_reversal, warm_start_coefficient
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams
from tljax.models.heads import DomainDiscriminator

SCHEDULES = ("warm_start", "constant")


class DomainClassifier(nnx.Module):
    """A ``num_outputs``-way domain discriminator, with a class embedding if conditional."""

    def __init__(
        self,
        feature_dim: int,
        num_domains: int,
        num_outputs: int,
        hidden: tuple[int, ...],
        *,
        batch_norm: bool,
        num_classes: int | None,
        rngs: nnx.Rngs,
    ):
        self.num_domains = int(num_domains)
        self.disc = DomainDiscriminator(
            feature_dim, hidden, batch_norm=batch_norm, out_dim=num_outputs, rngs=rngs
        )
        self.class_embed = (
            nnx.Embed(num_classes, feature_dim, rngs=rngs) if num_classes is not None else None
        )


def coefficient(step, *, schedule: str, hi: float, alpha: float, max_iters: float):
    """The GRL coefficient at ``step``: warm start to ``hi`` or constant ``hi``."""
    if schedule == "constant":
        return jnp.float32(hi)
    return warm_start_coefficient(step, lo=0.0, hi=hi, alpha=alpha, max_iters=max_iters)


def check_schedule(schedule: str, name: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"{name}: grl_schedule={schedule!r} is not one of {SCHEDULES}.")


@records_hparams
def make(
    *,
    conditional: bool = False,
    hidden: tuple[int, ...] = (256, 256),
    batch_norm: bool = False,
    grl_schedule: str = "warm_start",
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds DANN (or, ``conditional=True``, CDANN) over the training domains.

    Args:
      conditional: CDANN: class embedding added to the discriminator input, class-balanced
        discriminator loss.
      hidden: hidden widths of the discriminator.
      batch_norm: BatchNorm in the discriminator.
      grl_schedule: ``"warm_start"`` or ``"constant"``.
      grl_hi, grl_alpha, grl_max_iters: the GRL coefficient ``λ`` (its final value) and its
        warm-start schedule.
    """
    name = "cdann" if conditional else "dg_dann"
    check_schedule(grl_schedule, name)

    def init(rngs, info):
        k = D.require_domains(info, name)
        return DomainClassifier(
            info.feature_dim,
            k,
            k,
            tuple(hidden),
            batch_norm=batch_norm,
            num_classes=info.num_classes if conditional else None,
            rngs=rngs,
        )

    def objective(ctx, batch) -> Losses:
        module = ctx.net.method
        k = module.num_domains
        src, _ = D.forward(ctx, batch)
        labels, domains = batch["source"]["label"], batch["source"]["domain"]
        coeff = coefficient(
            ctx.step, schedule=grl_schedule, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        f = gradient_reversal(src.features.astype(jnp.float32), coeff)
        weights = None
        if conditional:
            f = f + module.class_embed(labels).astype(jnp.float32)
            weights = cdann_class_weights(labels, domains, src.logits.shape[-1], k)
        d = module.disc(f).astype(jnp.float32)
        if k == 1:  # one training domain (a LOO run): a 1-way classifier, loss 0 (DomainBed)
            d = d[:, None]
        adv = domain_adversarial_ce(d, domains, weights=weights)
        risks = D.domain_risks(src.logits, labels, k)
        return Losses(
            jnp.mean(risks),
            adv,
            D.accuracy(src.logits, labels),
            {"domain_acc": D.accuracy(d, domains), "grl_coeff": coeff},
        )

    return Method(
        name=name,
        init=init,
        train_step=own_step(objective, name=name),
        needs_target=False,
        multi_domain=True,
    )

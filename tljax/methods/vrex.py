r"""V-REx: risk extrapolation by the variance of the domain risks (Krueger et al., ICML 2021).

.. math::
   \min_{F,C}\; \tfrac1K\textstyle\sum_k R_k + \lambda(i)\,\mathrm{Var}_k(R_k),
   \qquad \lambda(i) = \begin{cases}1 & i < T\\ \lambda & i\ge T\end{cases}

as DomainBed's ``VREx``: the biased variance of the per-domain cross-entropies
(:func:`tljax.losses.dg.vrex_penalty`), weight 1 for the first ``anneal_iters`` steps and
``penalty_weight`` after, the optimizer state re-initialised at ``anneal_iters`` (as
DomainBed's new Adam; :func:`tljax.methods._domains.reset_optimizer_at`). Unlike IRM the
loss is not rescaled. DomainBed's defaults: ``vrex_lambda = 10``,
``vrex_penalty_anneal_iters = 500``; random search ``λ ~ 10^U(-1, 5)``, ``T ~ 10^U(0, 4)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.losses.dg import vrex_penalty
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams


@records_hparams
def make(*, penalty_weight: float = 10.0, anneal_iters: int = 500) -> Method:
    """Builds V-REx.

    Args:
      penalty_weight: ``λ`` after the annealing (DomainBed's ``vrex_lambda``).
      anneal_iters: steps with weight 1 before it (``vrex_penalty_anneal_iters``).
    """
    anneal_iters = int(anneal_iters)

    def init(rngs, info):
        del rngs
        return D.DomainCount(D.require_domains(info, "vrex"))

    def objective(ctx, batch) -> Losses:
        k = ctx.net.method.num_domains
        src, _ = D.forward(ctx, batch)
        labels = batch["source"]["label"]
        risks = D.domain_risks(src.logits, labels, k)
        penalty = vrex_penalty(risks)
        w = D.ramp(ctx.step, anneal_iters, penalty_weight)
        return Losses(
            jnp.mean(risks),
            w * penalty,
            D.accuracy(src.logits, labels),
            {"penalty": penalty, "penalty_weight": w, "risk_max": jnp.max(risks)},
        )

    step = D.reset_optimizer_at(own_step(objective, name="vrex"), anneal_iters)
    return Method(name="vrex", init=init, train_step=step, needs_target=False, multi_domain=True)

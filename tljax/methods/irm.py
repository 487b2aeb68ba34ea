r"""IRM: invariant risk minimisation, the IRMv1 penalty (Arjovsky et al., 2019).

.. math::
   \min_{F,C}\; \tfrac1K\textstyle\sum_k R_k + \lambda(i)\,\tfrac1K\textstyle\sum_k
   \big\|\nabla_{w|w=1} R_k(w\cdot C\circ F)\big\|^2,
   \qquad \lambda(i) = \begin{cases}1 & i < T\\ \lambda & i\ge T\end{cases}

as DomainBed's ``IRM`` (``domainbed/algorithms.py``): the squared gradient norm is
estimated without bias from the even and odd halves of each domain's batch
(:func:`tljax.losses.dg.irm_penalty`); the penalty weight is 1 for the first
``anneal_iters`` steps and ``penalty_weight`` after; when the weight exceeds 1 the whole
loss is divided by it (DomainBed: "to keep gradient magnitudes in check"); and the
optimizer state is re-initialised at step ``anneal_iters`` (DomainBed builds a new Adam
there; see :func:`tljax.methods._domains.reset_optimizer_at` — exact with the constant
learning rate DomainBed uses). DomainBed's defaults: ``irm_lambda = 100``,
``irm_penalty_anneal_iters = 500``; its random search: ``λ ~ 10^U(-1, 5)``,
``T ~ 10^U(0, 4)``.

Logged: ``irm/penalty`` (mean over domains), ``irm/penalty_weight``, ``irm/risk_max``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.losses.dg import irm_penalty
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams


@records_hparams
def make(*, penalty_weight: float = 100.0, anneal_iters: int = 500) -> Method:
    """Builds IRM.

    Args:
      penalty_weight: ``λ`` after the annealing (DomainBed's ``irm_lambda``).
      anneal_iters: steps with weight 1 before it (``irm_penalty_anneal_iters``).
    """
    anneal_iters = int(anneal_iters)

    def init(rngs, info):
        del rngs
        return D.DomainCount(D.require_domains(info, "irm"))

    def objective(ctx, batch) -> Losses:
        k = ctx.net.method.num_domains
        src, _ = D.forward(ctx, batch)
        labels = batch["source"]["label"]
        logits_k = D.per_domain(src.logits, k)
        labels_k = D.per_domain(labels, k)
        risks = D.domain_risks(src.logits, labels, k)
        penalty = jnp.mean(jax.vmap(irm_penalty)(logits_k, labels_k))
        w = D.ramp(ctx.step, anneal_iters, penalty_weight)
        scale = jnp.where(w > 1.0, w, 1.0)
        nll = jnp.mean(risks)
        # task + weight·method = (nll + w·penalty)/scale with the config's weight 1.
        return Losses(
            nll / scale,
            w * penalty / scale,
            D.accuracy(src.logits, labels),
            {"penalty": penalty, "penalty_weight": w, "risk_max": jnp.max(risks)},
        )

    step = D.reset_optimizer_at(own_step(objective, name="irm"), anneal_iters)
    return Method(name="irm", init=init, train_step=step, needs_target=False, multi_domain=True)

r"""GroupDRO: distributionally robust optimisation over the training domains (Sagawa et al.,
ICLR 2020).

.. math::
   q_k \leftarrow \frac{q_k\, e^{\eta R_k}}{\sum_j q_j\, e^{\eta R_j}},\qquad
   \min_{F,C}\; \textstyle\sum_k q_k R_k

as DomainBed's ``GroupDRO``: the weights move towards the domains with the highest risk
(an exponentiated-gradient ascent step on the simplex, risks detached,
:func:`tljax.losses.dg.group_dro_weights`) *before* the model's update of the same step,
which then minimises the ``q``-weighted risk. ``q`` starts uniform and lives in the
method's non-trainable state (checkpointed; a resumed run continues with it). DomainBed's
default ``groupdro_eta = 0.01``, random search ``η ~ 10^U(-3, -1)``.

The objective replaces the mean risk: it is logged as the task loss, the method loss is 0.
Logged: ``group_dro/q_max`` and ``group_dro/risk_max``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.losses.dg import group_dro_loss, group_dro_weights
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams


@records_hparams
def make(*, eta: float = 0.01) -> Method:
    """Builds GroupDRO.

    Args:
      eta: the step size of the group weights (DomainBed's ``groupdro_eta``).
    """

    def init(rngs, info):
        del rngs
        k = D.require_domains(info, "group_dro")
        return D.DomainCount(k, q=jnp.full((k,), 1.0 / k, jnp.float32))

    def objective(ctx, batch) -> Losses:
        module = ctx.net.method
        src, _ = D.forward(ctx, batch)
        labels = batch["source"]["label"]
        risks = D.domain_risks(src.logits, labels, module.num_domains)
        q = group_dro_weights(module.q.get_value(), jax.lax.stop_gradient(risks), eta=eta)
        module.q.set_value(q)  # kept in ``rest`` by own_step
        return Losses(
            group_dro_loss(q, risks),
            jnp.zeros((), jnp.float32),
            D.accuracy(src.logits, labels),
            {"q_max": jnp.max(q), "risk_max": jnp.max(risks)},
        )

    return Method(
        name="group_dro",
        init=init,
        train_step=own_step(objective, name="group_dro"),
        needs_target=False,
        multi_domain=True,
    )

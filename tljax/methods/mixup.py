r"""Inter-domain Mixup (Yan et al., 2020; Wang et al., 2020), as DomainBed's ``Mixup``.

.. math::
   \min_{F,C}\; \tfrac1K\textstyle\sum_{(i,j)} \lambda_{ij}\,\ell(C(F(\tilde x)), y_i)
   + (1-\lambda_{ij})\,\ell(C(F(\tilde x)), y_j),\qquad
   \tilde x = \lambda_{ij} x_i + (1-\lambda_{ij}) x_j,\;
   \lambda_{ij}\sim\mathrm{Beta}(\alpha,\alpha)

over DomainBed's random pairs of domain batches (a random permutation ``π`` of the
domains, pair ``(π_k, π_{k+1 mod K})``: :func:`tljax.losses.dg.domain_pairs`), one ``λ``
per pair, each pair's example ``b`` mixed with the other domain's example ``b`` (both
batches are already shuffled). The model sees only the ``K`` mixed batches (one forward
pass, BatchNorm over all of them). DomainBed's default ``mixup_alpha = 0.2``, random
search ``α ~ 10^U(-1, 1)``. The logged ``source_acc`` is the accuracy against the first
label of each mixed example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.losses.dg import domain_pairs, mix_inputs, mixup_lambda, mixup_loss
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method, records_hparams


@records_hparams
def make(*, alpha: float = 0.2) -> Method:
    """Builds inter-domain Mixup.

    Args:
      alpha: the Beta(α, α) parameter of the mixing weight (DomainBed's ``mixup_alpha``).
    """
    if not alpha > 0:
        raise ValueError(f"mixup: alpha must be > 0, got {alpha!r}.")

    def init(rngs, info):
        del rngs
        return D.DomainCount(D.require_domains(info, "mixup"))

    def objective(ctx, batch) -> Losses:
        k = ctx.net.method.num_domains
        x = D.per_domain(batch["source"]["image"], k)
        y = D.per_domain(batch["source"]["label"], k)
        k_pairs, k_lam = jax.random.split(ctx.rng)
        first, second = domain_pairs(k, k_pairs)
        lam = mixup_lambda(k_lam, alpha, (k,))
        mixed = jax.vmap(mix_inputs)(x[first], x[second], lam)
        logits, out = ctx.net.model(ctx.cast(mixed.reshape(-1, *mixed.shape[2:])))
        logits = D.per_domain(logits.astype(jnp.float32), k)
        losses = jax.vmap(mixup_loss)(logits, y[first], y[second], lam)
        acc = D.accuracy(logits.reshape(-1, logits.shape[-1]), y[first].reshape(-1))
        return Losses(jnp.mean(losses), jnp.zeros((), jnp.float32), acc, {"lam_mean": lam.mean()})

    return Method(
        name="mixup",
        init=init,
        train_step=own_step(objective, name="mixup"),
        needs_target=False,
        multi_domain=True,
    )

"""The shared objective of DomainBed's CORAL and MMD: mean risk plus a feature penalty
averaged over every pair of training domains (:mod:`tljax.methods.dg_coral`,
:mod:`tljax.methods.dg_mmd`)."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from tljax.losses.dg_alignment import pairwise_penalty
from tljax.methods import _domains as D
from tljax.methods._steps import Losses, own_step
from tljax.methods.base import Method


def make(name: str, penalty_fn: Callable) -> Method:
    """A :class:`Method` minimising ``mean_k R_k + weight · mean_{i<j} penalty_fn(F_i, F_j)``."""

    def init(rngs, info):
        del rngs
        return D.DomainCount(D.require_domains(info, name))

    def objective(ctx, batch) -> Losses:
        k = ctx.net.method.num_domains
        src, _ = D.forward(ctx, batch)
        labels = batch["source"]["label"]
        feats = D.per_domain(src.features.astype(jnp.float32), k)
        penalty = pairwise_penalty([feats[i] for i in range(k)], penalty_fn)
        risks = D.domain_risks(src.logits, labels, k)
        return Losses(jnp.mean(risks), penalty, D.accuracy(src.logits, labels), {})

    return Method(
        name=name,
        init=init,
        train_step=own_step(objective, name=name),
        needs_target=False,
        multi_domain=True,
    )

r"""DANN: domain-adversarial neural network (Ganin et al., JMLR 2016).

.. math::
   \min_{F,C}\max_{D}\; \mathbb{E}_s[\ell(C(F(x)), y)]
   - \lambda\,\tfrac12\big(\mathrm{BCE}(D(F(x_s)), 1) + \mathrm{BCE}(D(F(x_t)), 0)\big)

implemented, as in the paper and TLlib, with a gradient reversal layer (GRL) between the
features and the discriminator: the discriminator minimises the domain BCE, the features
receive ``-λ`` times its gradient. ``λ`` follows the warm-start schedule
``2(hi−lo)/(1+exp(−α i/N)) − (hi−lo) + lo`` (TLlib defaults α=1, lo=0, hi=1, N=1000).

The discriminator (TLlib: ``feature → 1024 → 1024 → 1`` with BatchNorm and ReLU) sees the
source and target features in one batch; the loss is ½(BCE_source + BCE_target) with
source labelled 1 and target 0 (TLlib's ``DomainAdversarialLoss``). The reported
``domain_acc`` is the discriminator's accuracy on that batch (0.5 = domains confused).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from tljax.losses.grl import gradient_reversal, warm_start_coefficient
from tljax.methods.base import Method, ModelInfo
from tljax.models.heads import DomainDiscriminator


def make(
    *,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    grl_lo: float = 0.0,
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds DANN.

    Args:
      hidden: hidden widths of the domain discriminator.
      batch_norm: BatchNorm in the discriminator.
      grl_lo, grl_hi, grl_alpha, grl_max_iters: the GRL warm-start schedule.
    """

    def init(rngs, info: ModelInfo):
        return DomainDiscriminator(
            info.feature_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs
        )

    def loss(discriminator, *, src, tgt, rng, step):
        del rng
        coeff = warm_start_coefficient(
            step, lo=grl_lo, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        f = jnp.concatenate([src.features, tgt.features], axis=0).astype(jnp.float32)
        d = discriminator(gradient_reversal(f, coeff)).astype(jnp.float32)
        ns = src.features.shape[0]
        labels = jnp.concatenate([jnp.ones((ns,)), jnp.zeros((d.shape[0] - ns,))])
        bce = optax.sigmoid_binary_cross_entropy(d, labels)
        value = 0.5 * (bce[:ns].mean() + bce[ns:].mean())
        acc = jnp.mean((d > 0) == (labels > 0.5))
        return value, {"domain_acc": acc, "grl_coeff": coeff}

    hp = dict(
        hidden=tuple(hidden),
        batch_norm=batch_norm,
        grl_lo=grl_lo,
        grl_hi=grl_hi,
        grl_alpha=grl_alpha,
        grl_max_iters=grl_max_iters,
    )
    return Method(name="dann", init=init, loss=loss, hparams=hp)

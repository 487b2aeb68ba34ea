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

**Keep the warm start (issue 14 item 7; ``docs/seeds.md``, "Seeds that collapse on 2-D
shifts").** Seeds collapse when a small discriminator meets full reversal from the first
steps. On ``shift2d/covariate`` (``configs/seeds_shift2d.py``: MLP 2→64→64, Adam 1e-3,
32+32 per step, 2000 steps, discriminator ``(32,)``, 10 seeds), target accuracy against
source only's mean of 94.8 (offset 2) / 84.2 (offset 3):

* default warm start (N = 1000): worst seed 92.8 / 83.2, no collapse;
* constant GRL (``grl_lo = grl_hi = 1``): 2 of 10 seeds at 85.8 / 7 of 10 at 26.6–79.9;
* fast warm start (N = 250, as ``configs/moons_common.py``): 94.1 / 4 of 10 at 21.6–71.0.

The collapsed runs oscillate: the target accuracy of one seed went 0.84 → 0.82 → 0.22
between steps 1000 and 2000 while its source loss kept falling; the domains stay
separable (domain loss ~0.2, not ln 2), and the feature moves that fool the discriminator
relabel the target region, which has no labels to hold it. A discriminator that keeps up
stabilises the game (two time-scales): the same N = 250 runs with the discriminator's lr
×10 (``optim.freeze = (("^method/", 10.0), ("^.*$", 1.0))``) had no collapse (worst 83.6
at offset 3), nor had constant-GRL runs with it (worst 94.0 / 83.2); with ×0.1, 4 of 10
ended at 33.6–63.2. So does capacity: the default 1024-1024 BatchNorm discriminator with
a constant GRL kept seeds 0–4 at 82.8–84.9 at offset 3 (the ``(32,)`` one: 39.9–84.7).
The defaults (warm start over N = 1000, a 1024-1024 BatchNorm discriminator) did not
collapse, so they stay as they are; with a constant or fast GRL, use a wide discriminator
or a faster one.
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

r"""IWAN: importance weighted adversarial nets (Zhang et al., CVPR 2018), for partial tasks.

Partial domain adaptation (the target has a subset of the source's classes; see
:mod:`tljax.data.label_sets`): source examples that look like the target should be
aligned, the others (most likely from classes the target lacks) down-weighted. Two
domain discriminators on the features ``f = F(x)``:

* ``D`` (``weight_discriminator``) learns source (1) vs target (0) on *detached*
  features — it never moves ``F`` — and gives each source example the importance weight

  .. math:: w_i = \frac{1 - σ(D(f_i))}{\frac1{n_s}\sum_k (1 - σ(D(f_k)))}

  (no gradient): high where ``D`` thinks the example could be a target one, mean 1 over
  the source batch;
* ``D_0`` (``discriminator``) plays the adversarial game with ``F`` through a gradient
  reversal layer (DANN's warm start), its source side weighted by ``w``.

The objective, as TLlib's ``examples/domain_adaptation/partial_domain_adaptation/iwan.py``
(trade-off ``λ = method.weight``, TLlib's default 3; ``γ`` = ``entropy_weight``, 0.1):

.. math::
   \mathrm{CE}(C(f^s), y^s) + γ\,\bar H(C(f^t))
   + λ\Big(1.5\,\mathcal L_{D}(f^s_{\rm detached}, f^t_{\rm detached})
   + \mathcal L_{D_0}(f^s, f^t; w)\Big)

with ``L(·)`` the (weighted) DANN loss ``½(mean w BCE(D(f^s), 1) + mean BCE(D(f^t), 0))``
(:func:`tljax.losses.adversarial.domain_adversarial_loss`) and ``H̄`` the mean entropy
of the target predictions. ``task_loss`` is ``CE + γ H̄`` (logged apart as
``iwan/cross_entropy`` and ``iwan/target_entropy``) and ``method_loss`` the
bracket. The paper trains a separate target encoder initialised from the source one
(ADDA-style); TLlib's shared encoder is what is implemented here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.errors import check_weight
from tljax.losses.adversarial import domain_adversarial_loss
from tljax.losses.entropy import entropy_per_sample
from tljax.losses.grl import gradient_reversal, warm_start_coefficient
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, records_hparams
from tljax.models.heads import DomainDiscriminator

WEIGHT_LOSS_SCALE = 1.5  # TLlib's factor on the weight discriminator's loss


class IWANNets(nnx.Module):
    """The weight discriminator ``D`` and the adversarial discriminator ``D_0``."""

    def __init__(self, feature_dim: int, hidden, batch_norm, *, rngs):
        def disc():
            return DomainDiscriminator(feature_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs)

        self.weight_discriminator = disc()
        self.discriminator = disc()


def importance_weights(d_source: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``w = (1 − σ(d)) / mean(1 − σ(d))`` for the weight discriminator's source logits
    ``d``, with no gradient (mean 1 over the batch)."""
    d = jax.lax.stop_gradient(jnp.reshape(d_source, (-1,)).astype(jnp.float32))
    w = jax.nn.sigmoid(-d)  # 1 − σ(d), exact for large |d|
    return w / jnp.maximum(w.mean(), eps)


def iwan_losses(dw_source, dw_target, d_source, d_target):
    """(weight discriminator's loss, weighted adversarial loss, importance weights).

    ``dw_*`` are the weight discriminator's logits on detached features, ``d_*`` the
    adversarial discriminator's (behind the GRL)."""
    w = importance_weights(dw_source)
    weight_loss = domain_adversarial_loss(dw_source, dw_target)
    adv = domain_adversarial_loss(d_source, d_target, source_weights=w)
    return weight_loss, adv, w


@records_hparams
def make(
    *,
    entropy_weight: float = 0.1,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    grl_lo: float = 0.0,
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds IWAN.

    Args:
      entropy_weight: ``γ`` of the target entropy term (TLlib's 0.1).
      hidden, batch_norm: both domain discriminators (as DANN's).
      grl_lo, grl_hi, grl_alpha, grl_max_iters: the GRL warm-start schedule (as DANN).

    Raises:
      ValueError: for a negative or non-finite ``entropy_weight``.
    """
    entropy_weight = check_weight("iwan", "entropy_weight", entropy_weight)

    def init(rngs, info: ModelInfo):
        return IWANNets(info.feature_dim, hidden, batch_norm, rngs=rngs)

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        logits, f, labels, ns = _steps.joint_forward(ctx, batch)
        nets = ctx.net.method
        coeff = warm_start_coefficient(
            ctx.step, lo=grl_lo, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        dw = nets.weight_discriminator(jax.lax.stop_gradient(f)).astype(jnp.float32)
        d = nets.discriminator(gradient_reversal(f, coeff)).astype(jnp.float32)
        weight_loss, adv, w = iwan_losses(dw[:ns], dw[ns:], d[:ns], d[ns:])
        ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits[:ns], labels))
        ent = jnp.mean(entropy_per_sample(logits[ns:]))
        acc = jnp.mean(jnp.argmax(logits[:ns], -1) == labels)
        metrics = {
            "grl_coeff": coeff,
            "cross_entropy": ce,
            "target_entropy": ent,
            "weight_discriminator_loss": weight_loss,
            "adversarial_loss": adv,
            "min_source_weight": w.min(),
            "max_source_weight": w.max(),
        }
        return _steps.Losses(
            task=ce + entropy_weight * ent,
            method=WEIGHT_LOSS_SCALE * weight_loss + adv,
            source_acc=acc,
            metrics=metrics,
        )

    return Method(
        name="iwan",
        init=init,
        train_step=_steps.own_step(objective, name="iwan"),
        hparams={"hidden": tuple(hidden)},
    )

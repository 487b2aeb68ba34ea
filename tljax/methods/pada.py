r"""PADA: partial adversarial domain adaptation (Cao et al., ECCV 2018).

For partial tasks (the target has a subset of the source's classes; see
:mod:`tljax.data.label_sets`). Class weights ``γ`` are the averaged target predictions,
normalised by their maximum, ``γ ← γ / max γ``; source classes the target lacks get small
weights. They weight both the source classification loss and the source side of the
domain-adversarial loss:

.. math::
   \frac1{n_s}\sum_i γ_{y_i}\,\ell(C(F(x_i)), y_i)
   + λ\,\tfrac12\Big(\frac1{n_s}\sum_i γ_{y_i}\,\mathrm{BCE}(D(F(x_i)), 1)
   + \frac1{n_t}\sum_j \mathrm{BCE}(D(F(x_j)), 0)\Big)

with a gradient reversal layer before ``D`` (DANN's warm-start schedule and
discriminator, :mod:`tljax.methods.dann`). The paper averages the predictions over the
whole target set every few epochs (TLlib too); here ``γ`` is an exponential moving
average of the batch-mean target softmax (``momentum``), kept in a :class:`Buffer`
(``rest/method/class_avg``, checkpointed), starting uniform, with no gradient.

Because the source classification loss is weighted by the source *labels*, which the
default step's ``method.loss`` never sees, PADA brings its own step
(:func:`tljax.methods._steps.own_step`): ``task_loss`` is the weighted cross-entropy and
``method_loss`` the weighted adversarial loss; the rest is as the default step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.losses.adversarial import domain_adversarial_loss, normalize_by_max
from tljax.losses.grl import gradient_reversal, warm_start_coefficient
from tljax.methods import _steps
from tljax.methods.base import Buffer, Method, ModelInfo, records_hparams
from tljax.models.heads import DomainDiscriminator


class PADANets(nnx.Module):
    """The domain discriminator and the running average of target predictions."""

    def __init__(self, feature_dim: int, num_classes: int, hidden, batch_norm, *, rngs):
        self.discriminator = DomainDiscriminator(
            feature_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs
        )
        self.class_avg = Buffer(jnp.full((num_classes,), 1.0 / num_classes, jnp.float32))


def update_class_average(avg, target_logits, momentum: float):
    """``momentum · avg + (1 − momentum) · mean softmax(target_logits)``, no gradient."""
    p = jax.nn.softmax(jax.lax.stop_gradient(target_logits).astype(jnp.float32), axis=-1)
    return momentum * avg + (1.0 - momentum) * p.mean(0)


def pada_losses(source_logits, labels, d_source, d_target, class_avg):
    """(weighted source cross-entropy, weighted adversarial loss, class weights γ)."""
    gamma = normalize_by_max(class_avg)
    w = gamma[labels]
    ce = optax.softmax_cross_entropy_with_integer_labels(source_logits.astype(jnp.float32), labels)
    adv = domain_adversarial_loss(d_source, d_target, source_weights=w)
    return jnp.mean(w * ce), adv, gamma


@records_hparams
def make(
    *,
    momentum: float = 0.9,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    grl_lo: float = 0.0,
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds PADA.

    Args:
      momentum: of the moving average of the target predictions behind the class weights.
      hidden, batch_norm: the domain discriminator (as DANN).
      grl_lo, grl_hi, grl_alpha, grl_max_iters: the GRL warm-start schedule (as DANN).
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"pada: momentum must be in [0, 1), got {momentum!r}.")

    def init(rngs, info: ModelInfo):
        return PADANets(info.feature_dim, info.num_classes, hidden, batch_norm, rngs=rngs)

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        logits, f, labels, ns = _steps.joint_forward(ctx, batch)
        nets = ctx.net.method
        avg = update_class_average(nets.class_avg.get_value(), logits[ns:], momentum)
        nets.class_avg.set_value(avg)
        coeff = warm_start_coefficient(
            ctx.step, lo=grl_lo, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        d = nets.discriminator(gradient_reversal(f, coeff)).astype(jnp.float32)
        task, adv, gamma = pada_losses(logits[:ns], labels, d[:ns], d[ns:], avg)
        acc = jnp.mean(jnp.argmax(logits[:ns], -1) == labels)
        metrics = {"grl_coeff": coeff, "min_class_weight": gamma.min()}
        return _steps.Losses(task=task, method=adv, source_acc=acc, metrics=metrics)

    return Method(
        name="pada",
        init=init,
        train_step=_steps.own_step(objective, name="pada"),
        hparams={"hidden": tuple(hidden)},
    )

r"""OSBP: open set domain adaptation by backpropagation (Saito et al., ECCV 2018).

For open-set tasks (:mod:`tljax.data.label_sets`, ``open_set/<task>``): the classifier is
``K+1``-way, the last output being *unknown*, so **the task's ``num_classes`` must include
the unknown class** (``open_set/...`` tasks have ``num_classes = k + 1`` and
``unknown_label = k``; the source never shows it). With ``p_u(x)`` the softmax
probability of the last class:

.. math::
   \mathcal L_s = \mathbb{E}_s[\ell(C(F(x)), y)],\qquad
   \mathcal L_{adv} = -\mathbb{E}_t\big[t\log p_u(x) + (1-t)\log(1-p_u(x))\big]

The classifier ``C`` minimises ``L_s + λ L_adv`` (it tries to put every target sample on
the boundary ``p_u = t``, default ``t = 0.5``) while the feature generator ``F`` minimises
``L_s − λ L_adv`` (it pushes target samples towards a known class, ``p_u → 0``, or to
unknown, ``p_u → 1``): one backward pass with a gradient reversal layer (coefficient
``grl_coeff``, constant as in the paper and TLlib) between the features and the
classifier on the target branch.

The adversarial branch re-applies the model's own ``head`` to the reversed target
features, which the default step's ``method.loss`` (it only sees outputs) cannot do, so
OSBP brings its own step (:func:`tljax.methods._steps.own_step`); it needs a
:class:`~tljax.models.heads.Classifier` (``backbone``/``bottleneck``/``head``). Predict
with the arg-max over the ``K+1`` outputs (:mod:`tljax.evaluate_label_sets`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tljax.losses.grl import gradient_reversal
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, records_hparams, require_classifier


def boundary_loss(logits_adv, threshold: float = 0.5, eps: float = 1e-6):
    """``−mean(t log p_u + (1 − t) log(1 − p_u))`` with ``p_u`` the last softmax output."""
    p = jax.nn.softmax(logits_adv.astype(jnp.float32), axis=-1)[:, -1]
    return -jnp.mean(threshold * jnp.log(p + eps) + (1.0 - threshold) * jnp.log(1.0 - p + eps))


@records_hparams
def make(*, threshold: float = 0.5, grl_coeff: float = 1.0) -> Method:
    """Builds OSBP.

    Args:
      threshold: the boundary ``t`` on the unknown probability of target samples.
      grl_coeff: the gradient reversal coefficient (constant).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"osbp: threshold must be in (0, 1), got {threshold!r}.")

    def init(rngs, info: ModelInfo):
        del rngs
        if info.num_classes < 2:
            raise ValueError(
                "osbp needs num_classes >= 2 (the known classes plus the unknown one, the "
                f"last label); got {info.num_classes}."
            )
        if info.model is not None:
            require_classifier(info, "osbp")
        return None

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        xs, xt = batch["source"]["image"], batch["target"]["image"]
        labels = batch["source"]["label"]
        ns = xs.shape[0]
        logits, out = ctx.net.model(ctx.cast(jnp.concatenate([xs, xt], axis=0)))
        ls = logits[:ns].astype(jnp.float32)
        task = optax.softmax_cross_entropy_with_integer_labels(ls, labels).mean()
        ft = out["features"][ns:]
        adv_logits = ctx.net.model.head(gradient_reversal(ft, jnp.float32(grl_coeff)))
        adv = boundary_loss(adv_logits, threshold)
        p_unk = jax.nn.softmax(logits[ns:].astype(jnp.float32), axis=-1)[:, -1]
        acc = jnp.mean(jnp.argmax(ls, -1) == labels)
        metrics = {"target_p_unknown": p_unk.mean(), "target_unknown_rate": jnp.mean(p_unk > 0.5)}
        return _steps.Losses(task=task, method=adv, source_acc=acc, metrics=metrics)

    return Method(name="osbp", init=init, train_step=_steps.own_step(objective, name="osbp"))

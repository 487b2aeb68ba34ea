r"""UAN: universal adaptation network (You et al., CVPR 2019, "Universal Domain Adaptation").

For universal tasks (:mod:`tljax.data.label_sets`, ``universal/<task>``: shared classes,
source-private classes, and target-private ones labelled *unknown*). The classifier is
``|C_s|``-way over the source classes; the task's head has one more output, the unknown
label (``universal/`` and ``open_set/`` tasks have ``num_classes = |C_s| + 1`` and
``unknown_label = |C_s|``, the last output), which UAN never predicts directly: it is the
decision below. ``K = num_classes − 1 = |C_s|`` (with ``K = 1``, a smoke task such as
``universal/moons``, the entropy term is 0).

Two discriminators on the features ``f = F(x)``: the adversarial one ``D`` behind a
gradient reversal layer, and the auxiliary ``D'`` on detached features (it trains
itself, its gradient never reaches ``F``); ``d'(x) = σ(D'(f))`` is its probability of
*source*. With ``Ĥ(x) = H(softmax(z_{1..K}(x)/T)) / log K`` the normalised entropy of the
prediction over the ``K`` source classes, the sample-level transferability is

.. math::
   w_s(x) = Ĥ(x) - d'(x) \quad (T = 10),\qquad w_t(x) = d'(x) - Ĥ(x) \quad (T = 1),

each normalised over its batch, ``w ← (w − min w)/(max w − min w)``, ``w ← w / mean w``,
with no gradient (a batch whose weights are all equal gets weight 1). The objective:

.. math::
   \mathcal L = \mathbb{E}_s[\ell(C(f), y)]
   + λ\Big(\underbrace{\tfrac1{n_s}\sum_i w_s(x_i)\,\mathrm{BCE}(D(f_i), 1)
   + \tfrac1{n_t}\sum_j w_t(x_j)\,\mathrm{BCE}(D(f_j), 0)}_{\text{adversarial (GRL)}}
   + \underbrace{\mathrm{BCE}_s(D'(\bar f), 1)
   + \mathrm{BCE}_t(D'(\bar f), 0)}_{\text{auxiliary}}\Big)

(``\bar f``: stop-gradient; ``BCE_s``, ``BCE_t``: batch means). ``D`` minimises the
adversarial term and ``F`` maximises it (GRL, coefficient from the warm-start schedule
``2/(1+exp(−α i/N)) − 1``, the official code's α = 10, N = 10,000). At test time a sample
with the **raw** (unnormalised, ``T = 1``) ``w_t(x) < w_0`` is predicted *unknown*, else
the arg-max over the ``K`` source classes (``Method.predict``; the label-set metrics of
:mod:`tljax.evaluate_label_sets` use it). Default ``w_0 = −0.5``.

As the official code (thuml/Universal-Domain-Adaptation, ``uan.py``/``models/uan.py``):
the two sides of the adversarial loss are summed (not halved as DANN's), the temperatures
``T = 10`` (source) and ``T = 1`` (target), the min-max-then-mean normalisation, ``D'`` on
detached features, ``w_0`` on the raw ``w_t``. Differences: the cross-entropy is on the
logits over all ``K + 1`` outputs (the official code applies ``CrossEntropyLoss`` to the
softmax *probabilities*, a known quirk; the unknown output is pushed down as in
source-only runs on the same task); the discriminators are DANN's here
(``1024 → 1024 → 1``, BatchNorm by default; the official ones use Dropout 0.5 and no
BatchNorm: ``batch_norm=False`` and no dropout is the closest); ``λ`` scales the
auxiliary term too (the official code has ``λ = 1``).

The objective needs the source labels and both discriminators inside one step, so UAN
brings its own step (:func:`tljax.methods._steps.own_step`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.losses.adversarial import domain_adversarial_loss
from tljax.losses.grl import gradient_reversal, warm_start_coefficient
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, records_hparams
from tljax.models.heads import DomainDiscriminator


class UANNets(nnx.Module):
    """The adversarial discriminator ``D`` and the auxiliary (non-adversarial) ``D'``."""

    def __init__(self, feature_dim: int, hidden, batch_norm: bool, *, rngs):
        self.discriminator = DomainDiscriminator(
            feature_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs
        )
        self.auxiliary = DomainDiscriminator(
            feature_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs
        )


def normalized_entropy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """``H(softmax(z / T)) / log K`` per example, over the ``K`` columns of ``logits``
    (0 for ``K = 1``: one class is a certain prediction)."""
    k = logits.shape[-1]
    if k == 1:
        return jnp.zeros(logits.shape[:-1], jnp.float32)
    z = logits.astype(jnp.float32) / temperature
    logp = jax.nn.log_softmax(z, axis=-1)
    h = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return h / np.log(k)


def transferability(aux_logits, class_logits, *, domain: str, temperature: float):
    """Raw ``w_s = Ĥ − d'`` (``domain="source"``) or ``w_t = d' − Ĥ`` (``"target"``),
    no gradient. ``class_logits``: the ``K`` source-class logits (not the unknown one)."""
    d = jax.nn.sigmoid(aux_logits.astype(jnp.float32))
    h = normalized_entropy(class_logits, temperature)
    w = h - d if domain == "source" else d - h
    return jax.lax.stop_gradient(w)


def normalize_weight(w: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``(w − min)/(max − min)``, then divided by its mean (the official code's
    ``normalize_weight``); all ones when the batch's weights are (nearly) equal."""
    w = jax.lax.stop_gradient(w.astype(jnp.float32))
    span = w.max() - w.min()
    scaled = (w - w.min()) / jnp.maximum(span, eps)
    out = scaled / jnp.maximum(scaled.mean(), eps)
    return jnp.where(span > eps, out, jnp.ones_like(w))


def uan_losses(d_source, d_target, aux_source, aux_target, w_source, w_target):
    """(weighted adversarial loss of ``D``, auxiliary loss of ``D'``), on logits."""
    # The official code sums the two sides (domain_adversarial_loss halves them).
    adv = 2.0 * domain_adversarial_loss(
        d_source, d_target, source_weights=w_source, target_weights=w_target
    )
    aux = 2.0 * domain_adversarial_loss(aux_source, aux_target)
    return adv, aux


def predict_labels(aux_logits, logits, w0: float):
    """Test-time labels: the arg-max over the first ``K`` outputs, or ``K`` (unknown) when
    the raw ``w_t`` (``T = 1``) is below ``w0``."""
    k = logits.shape[-1] - 1
    w_t = transferability(aux_logits, logits[:, :k], domain="target", temperature=1.0)
    return jnp.where(w_t < w0, k, jnp.argmax(logits[:, :k], axis=-1))


@records_hparams
def make(
    *,
    w0: float = -0.5,
    source_temperature: float = 10.0,
    target_temperature: float = 1.0,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    grl_lo: float = 0.0,
    grl_hi: float = 1.0,
    grl_alpha: float = 10.0,
    grl_max_iters: float = 10000.0,
) -> Method:
    """Builds UAN.

    Args:
      w0: the test-time threshold: raw ``w_t < w0`` → unknown (``w_t`` lies in [−1, 1]).
      source_temperature, target_temperature: the softmax temperatures ``T`` of the
        entropy in ``w_s`` and ``w_t`` during training (official: 10 and 1).
      hidden, batch_norm: both discriminators (as DANN's).
      grl_lo, grl_hi, grl_alpha, grl_max_iters: the GRL warm-start schedule of ``D``.
    """
    if not -1.0 <= w0 <= 1.0:
        raise ValueError(f"uan: w0 must be in [-1, 1] (the range of w_t), got {w0!r}.")
    if source_temperature <= 0 or target_temperature <= 0:
        raise ValueError(
            f"uan: temperatures must be > 0, got {source_temperature!r}, {target_temperature!r}."
        )

    def init(rngs, info: ModelInfo):
        if info.num_classes < 2:
            raise ValueError(
                "uan needs num_classes >= 2: the source classes plus the unknown label "
                f"(the last output, as universal/ tasks have); got {info.num_classes}."
            )
        return UANNets(info.feature_dim, hidden, batch_norm, rngs=rngs)

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        logits, f, labels, ns = _steps.joint_forward(ctx, batch)
        k = logits.shape[-1] - 1
        task = _steps.cross_entropy(logits[:ns], labels)
        nets = ctx.net.method
        coeff = warm_start_coefficient(
            ctx.step, lo=grl_lo, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        d = nets.discriminator(gradient_reversal(f, coeff)).astype(jnp.float32)
        aux = nets.auxiliary(jax.lax.stop_gradient(f)).astype(jnp.float32)
        known = logits[:, :k]
        w_s = transferability(aux[:ns], known[:ns], domain="source", temperature=source_temperature)
        w_t = transferability(aux[ns:], known[ns:], domain="target", temperature=target_temperature)
        adv, aux_loss = uan_losses(
            d[:ns], d[ns:], aux[:ns], aux[ns:], normalize_weight(w_s), normalize_weight(w_t)
        )
        raw_t = (
            w_t
            if target_temperature == 1.0
            else transferability(aux[ns:], known[ns:], domain="target", temperature=1.0)
        )
        metrics = {
            "grl_coeff": coeff,
            "adversarial_loss": adv,
            "auxiliary_loss": aux_loss,
            "aux_domain_acc": jnp.mean((aux > 0) == (jnp.arange(aux.shape[0]) < ns)),
            "target_w": raw_t.mean(),
            "target_unknown_rate": jnp.mean(raw_t < w0),
        }
        acc = _steps.accuracy(logits[:ns], labels)
        return _steps.Losses(task=task, method=adv + aux_loss, source_acc=acc, metrics=metrics)

    def predict(nets, logits, features):
        return predict_labels(nets.auxiliary(features.astype(jnp.float32)), logits, w0)

    return Method(
        name="uan",
        init=init,
        train_step=_steps.own_step(objective, name="uan"),
        hparams={"hidden": tuple(hidden)},
        predict=predict,
    )

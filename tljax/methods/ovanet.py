r"""OVANet: one-vs-all network for universal domain adaptation (Saito & Saenko, ICCV 2021).

For ``universal/`` and ``open_set/`` tasks (:mod:`tljax.data.label_sets`): the task's head
has ``K + 1`` outputs, the last being the *unknown* label; the closed-set classifier ``C``
is its first ``K`` outputs (the source classes). OVANet adds ``K`` one-vs-all binary
classifiers ``O`` on the same features (one linear layer ``f → 2K`` without bias, read as
``(2, K)``: row 0 "not class k", row 1 "class k"; softmax over the row). With
``p_k(x) = softmax(O(f))[1, k]``, the probability that ``x`` belongs to class ``k``:

.. math::
   \mathcal L = \mathbb E_s\big[\ell(C(f), y)\big]
   + λ\Big(\underbrace{\tfrac12\,\mathbb E_s\big[-\log p_y(x)
     - \max_{k\ne y}\log(1 - p_k(x))\big]}_{\text{OVA loss, hardest negative}}
   + γ\,\underbrace{\mathbb E_t\Big[\tfrac1K\sum_k h\big(p_k(x)\big)\Big]}_{
     \text{open-set entropy}}\Big)

with ``h(p) = −p log p − (1−p) log(1−p)`` (natural log). The source OVA loss pushes each
class's classifier up on its class and the *hardest* other classifier down; the target
term (open-set entropy minimisation) makes every one-vs-all decision on the target
confident, which pushes target samples of shared classes towards "known" and the private
ones towards "unknown". Test time (:attr:`Method.predict`): ``ŷ = argmax C(f)``; unknown
when ``1 − p_ŷ(x) > threshold`` (0.5: no threshold to tune, the paper's point).

As the official code (VisionLearningGroup/OVANet, ``utils/loss.py``'s ``ova_loss`` and
``open_entropy``; ``train.py``): ``O`` without bias, the pair layout ``view(B, 2, K)``,
``+1e-8`` inside the logarithms, the two OVA terms halved, γ = 0.1 (its ``multi``) and
``λ = 1``. Differences: the closed-set classifier is the model's own head (with bias; the
official one has none) and its cross-entropy is over all ``K + 1`` outputs, as UAN's here
(the unknown output is pushed down as in source-only runs on the same task; it never
decides, the rule above reads the first ``K``); the official code trains ``C`` and ``O``
with a 10× learning rate, here one optimizer. A source example labelled unknown (none in
``universal/`` or ``open_set/`` tasks) gets no positive term and its hardest negative
over all ``K`` classifiers.

The objective needs the source labels and ``O`` inside one step, so OVANet brings its
own step (:func:`tljax.methods._steps.own_step`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.errors import as_float, check_weight
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, records_hparams

EPS = 1e-8


class OVANets(nnx.Module):
    """The ``K`` one-vs-all classifiers: one linear layer ``f → 2K`` without bias."""

    def __init__(self, feature_dim: int, num_known: int, *, rngs):
        self.num_known = num_known
        self.heads = nnx.Linear(feature_dim, 2 * num_known, use_bias=False, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        """Pair probabilities ``(B, 2, K)``: ``[:, 1, k]`` = P(class k), ``[:, 0, k]`` = not."""
        z = self.heads(features.astype(jnp.float32)).astype(jnp.float32)
        return jax.nn.softmax(z.reshape(z.shape[0], 2, self.num_known), axis=1)


def ova_loss(pairs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(positive, hardest-negative) source OVA terms, each a batch mean.

    ``pairs``: ``(B, 2, K)`` pair probabilities; ``labels``: ``(B,)`` in ``[0, K)``.
    Positive: ``−log(p_y + ε)``; negative: ``max_{k≠y} −log(1 − p_k + ε)`` (the official
    code's ``max`` over ``−log(p[:,0,:]) · (1 − onehot)``, whose zero at ``k = y`` never
    wins since every other term is ≥ 0).
    """
    k = pairs.shape[-1]
    onehot = jax.nn.one_hot(labels, k, dtype=jnp.float32)
    pos = jnp.sum(-jnp.log(pairs[:, 1, :] + EPS) * onehot, axis=1)
    neg = jnp.max(-jnp.log(pairs[:, 0, :] + EPS) * (1.0 - onehot), axis=1)
    return jnp.mean(pos), jnp.mean(neg)


def open_entropy(pairs: jax.Array) -> jax.Array:
    """Mean over the batch and the ``K`` classifiers of the binary entropy (nats)."""
    return jnp.mean(jnp.sum(-pairs * jnp.log(pairs + EPS), axis=1))


def predict_labels(pairs: jax.Array, logits: jax.Array, threshold: float) -> jax.Array:
    """``argmax`` over the first ``K`` logits, or ``K`` (unknown) where the predicted
    class's one-vs-all classifier says "not it" with probability ``> threshold``."""
    k = pairs.shape[-1]
    pred = jnp.argmax(logits[:, :k], axis=-1)
    not_it = jnp.take_along_axis(pairs[:, 0, :], pred[:, None], axis=1)[:, 0]
    return jnp.where(not_it > threshold, k, pred)


@records_hparams
def make(*, entropy_weight: float = 0.1, threshold: float = 0.5) -> Method:
    """Builds OVANet.

    Args:
      entropy_weight: γ, the weight of the target open-set entropy inside the method loss
        (official: 0.1).
      threshold: test time: unknown where ``1 − p_ŷ > threshold`` (official: 0.5).
    """
    entropy_weight = check_weight("ovanet", "entropy_weight", entropy_weight)
    threshold = as_float(threshold)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"ovanet: threshold must be in (0, 1), got {threshold!r}.")

    def init(rngs, info: ModelInfo):
        if info.num_classes < 2:
            raise ValueError(
                "ovanet needs num_classes >= 2: the source classes plus the unknown label "
                f"(the last output, as universal/ and open_set/ tasks have); got "
                f"{info.num_classes}."
            )
        return OVANets(info.feature_dim, info.num_classes - 1, rngs=rngs)

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        logits, features, labels, ns = _steps.joint_forward(ctx, batch)
        k = logits.shape[-1] - 1
        task = _steps.cross_entropy(logits[:ns], labels)
        pairs = ctx.net.method(features)
        pos, neg = ova_loss(pairs[:ns], labels)
        ent = open_entropy(pairs[ns:])
        method = 0.5 * (pos + neg) + entropy_weight * ent
        unknown = predict_labels(pairs[ns:], logits[ns:], threshold) == k
        metrics = {
            "ova_positive": pos,
            "ova_negative": neg,
            "target_open_entropy": ent,
            "target_unknown_rate": jnp.mean(unknown),
        }
        acc = _steps.accuracy(logits[:ns], labels)
        return _steps.Losses(task=task, method=method, source_acc=acc, metrics=metrics)

    def predict(nets, logits, features):
        return predict_labels(nets(features), logits.astype(jnp.float32), threshold)

    return Method(
        name="ovanet",
        init=init,
        train_step=_steps.own_step(objective, name="ovanet"),
        predict=predict,
    )

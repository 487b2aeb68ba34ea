r"""Mean teacher (Tarvainen & Valpola, NeurIPS 2017; for domain adaptation: French et al.,
"Self-ensembling for visual domain adaptation", ICLR 2018).

.. math::
   L = \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\, \tfrac{1}{BC}\textstyle\sum_i
   \lVert \mathrm{softmax}(f_\theta(\mathcal{A}(x_{t,i}))) -
   \mathrm{softmax}(f_{\theta'}(\mathcal{A}'(x_{t,i})))\rVert^2,
   \qquad \theta' \leftarrow \alpha_i \theta' + (1 - \alpha_i)\, \theta

The teacher ``θ'`` is an exponential moving average of the student's weights, updated
after each optimizer step with ``α_i = min(1 − 1/(i + 1), decay)`` for the update of
0-based step ``i``: until ``α`` reaches ``decay`` the teacher is the plain average of the
student's iterates ``θ_1 … θ_{i+1}``. The official code's warm-up
``min(1 − 1/(global_step + 1), α)`` (``global_step = i + 1``) also averages in the
teacher's own random initialisation; we leave it out (``α_0 = 0``), which matters when
pretrained weights are loaded into the model after ``Method.init`` made the copy.
Student and teacher see two independent random augmentations of
the target batch (:func:`tljax.methods.self_training.augment`, milder defaults: shift,
jitter, noise, no cutout); the teacher gets no gradient. The teacher is a copy of the
model whose weights are :class:`~tljax.methods.base.Buffer` (non-trainable state in
``rest`` under ``method/teacher``); it runs in training mode and keeps its own BatchNorm
statistics, like TLlib's ``EmaTeacher`` (a deep copy). ``decay`` defaults to 0.99 (TLlib's
self-ensembling ``--alpha``; the paper uses 0.99 early and 0.999 later). TLlib's
self-ensembling also masks the consistency by teacher confidence and adds a class-balance
loss; this is the plain mean teacher. The student is the evaluated model. Loss:
:func:`tljax.losses.self_training.consistency_mse`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.losses.self_training import consistency_mse
from tljax.methods import _steps
from tljax.methods.base import (
    Method,
    ModelInfo,
    frozen_copy,
    records_hparams,
    require_classifier,
)
from tljax.methods.self_training import augment


class Teacher(nnx.Module):
    """Holds the EMA copy of the model (its weights are non-trainable Buffers)."""

    def __init__(self, model: nnx.Module):
        self.teacher = frozen_copy(model)


def ema_alpha(step: jax.Array, decay: float) -> jax.Array:
    """``min(1 − 1/(step + 1), decay)``: the EMA coefficient of the update at ``step``
    (0 at step 0: the teacher becomes the updated student)."""
    return jnp.minimum(1.0 - 1.0 / (jnp.asarray(step, jnp.float32) + 1.0), decay)


def ema_update(teacher: dict, student: dict, alpha: jax.Array) -> dict:
    """``α·teacher + (1 − α)·student`` on the leaves of ``student`` (a sub-tree of
    ``teacher`` by keys); other leaves of ``teacher`` (BatchNorm statistics) are kept."""
    out = dict(teacher)
    for k, v in student.items():
        if isinstance(v, dict):
            out[k] = ema_update(teacher[k], v, alpha)
        else:
            t = teacher[k]
            out[k] = (alpha * t + (1.0 - alpha) * v.astype(t.dtype)).astype(t.dtype)
    return out


@records_hparams
def make(
    *,
    decay: float = 0.99,
    shift: float = 0.125,
    jitter: float = 0.2,
    noise_std: float = 0.1,
    cutout: float = 0.0,
) -> Method:
    """Builds the mean teacher.

    Args:
      decay: the EMA decay ``α`` in ``[0, 1]``.
      shift, jitter, noise_std, cutout: augmentation strengths of both views.

    Raises:
      ValueError: for a decay outside ``[0, 1]`` or a negative strength.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"mean_teacher: decay must be in [0, 1], got {decay!r}.")
    strengths = dict(shift=shift, jitter=jitter, noise_std=noise_std, cutout=cutout)
    bad = {k: v for k, v in strengths.items() if not v >= 0}
    if bad:
        raise ValueError(f"mean_teacher: augmentation strengths must be >= 0, got {bad}.")

    def init(rngs: nnx.Rngs, info: ModelInfo) -> Teacher:
        del rngs
        return Teacher(require_classifier(info, "mean_teacher"))

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        xs, xt = batch["source"]["image"], batch["target"]["image"]
        k_student, k_teacher = jax.random.split(ctx.rng)
        x = ctx.cast(jnp.concatenate([xs, augment(xt, k_student, **strengths)], axis=0))
        xt_teacher = ctx.cast(augment(xt, k_teacher, **strengths))
        logits, _ = ctx.net.model(x)
        logits = logits.astype(jnp.float32)
        ys, yt = logits[: xs.shape[0]], logits[xs.shape[0] :]
        yt_teacher, _ = ctx.net.method.teacher(xt_teacher)
        labels = batch["source"]["label"]
        task = _steps.cross_entropy(ys, labels)
        cons = consistency_mse(yt, jax.lax.stop_gradient(yt_teacher.astype(jnp.float32)))
        return _steps.Losses(task, cons, _steps.accuracy(ys, labels))

    def after_update(rest, params, step):
        """The teacher's EMA step towards the updated student."""
        alpha = ema_alpha(step, decay)
        method_rest = dict(rest["method"])
        method_rest["teacher"] = ema_update(method_rest["teacher"], params["model"], alpha)
        return {**rest, "method": method_rest}, {"ema_alpha": alpha}

    train_step = _steps.own_step(objective, name="mean_teacher", after_update=after_update)
    return Method(name="mean_teacher", init=init, train_step=train_step)

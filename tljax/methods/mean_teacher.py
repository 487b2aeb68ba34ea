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
import optax
from flax import nnx

from tljax.losses.self_training import consistency_mse
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, frozen_copy, require_classifier
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

    def train_step(*, model, tx, frozen, weight, num_classes, lr_schedule=None, compute_dtype=None):
        del num_classes

        def loss_fn(params, rest, batch, rng):
            params = _steps.stop_gradient_where(params, frozen)
            net = nnx.merge(model.train_graph, _steps.cast_floats(params, compute_dtype), rest)
            xs, xt = batch["source"]["image"], batch["target"]["image"]
            k_student, k_teacher = jax.random.split(rng)
            x = jnp.concatenate([xs, augment(xt, k_student, **strengths)], axis=0)
            xt_teacher = augment(xt, k_teacher, **strengths)
            if compute_dtype is not None:
                x, xt_teacher = x.astype(compute_dtype), xt_teacher.astype(compute_dtype)
            logits, _ = net.model(x)
            logits = logits.astype(jnp.float32)
            ys, yt = logits[: xs.shape[0]], logits[xs.shape[0] :]
            yt_teacher, _ = net.method.teacher(xt_teacher)
            labels = batch["source"]["label"]
            task = _steps.cross_entropy(ys, labels)
            cons = consistency_mse(yt, jax.lax.stop_gradient(yt_teacher.astype(jnp.float32)))
            metrics = {
                "loss": task + weight * cons,
                "task_loss": task,
                "method_loss": cons,
                "source_acc": jnp.mean(jnp.argmax(ys, -1) == labels),
            }
            return metrics["loss"], (_steps.updated_rest(net, rest), metrics)

        def step(state, batch, rng=None):
            rng = _steps.step_rng(state, rng)
            grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(
                state.params, state.rest, batch, rng
            )
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            alpha = ema_alpha(state.step, decay)
            method_rest = dict(rest["method"])
            method_rest["teacher"] = ema_update(method_rest["teacher"], params["model"], alpha)
            rest = {**rest, "method": method_rest}
            metrics["mean_teacher/ema_alpha"] = alpha
            return _steps.finish(
                state,
                params=params,
                rest=rest,
                opt_state=opt_state,
                metrics=metrics,
                lr_schedule=lr_schedule,
            )

        return step

    hp = dict(decay=decay, **strengths)
    return Method(name="mean_teacher", init=init, train_step=train_step, hparams=hp)

r"""LwF: learning without forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017), for fine-tuning.

.. math::
   L = \mathbb{E}_{(x,y)}\big[\ell(C_n(F(x)), y)\big] + \lambda\, \mathbb{E}_x\,
   \mathrm{KL}\big(\mathrm{softmax}(C_o^0(F^0(x))/T)\,\big\|\,
   \mathrm{softmax}(C_o(F(x))/T)\big)

The network keeps the *old task's head* ``C_o`` next to the new head ``C_n``; both and
the shared features ``F`` are trained. The old head's outputs on the new data are
distilled towards those of the original network (``F⁰``, ``C_o⁰``: the pretrained
backbone and head, frozen), so the features stay useful for the old task. As TLlib's
``lwf.py``: KL with ``reduction="batchmean"`` and no ``T²`` factor
(:func:`tljax.losses.regularizers.lwf_distillation`), ``T = 3``, trade-off ``λ = 4``
(``config.method.weight``). TLlib records the teacher's outputs once before training;
with no data augmentation, computing them on the fly in each step, as here, gives the
same targets.

Where the pieces come from: ``F⁰`` is the starting point of the run (the model after
``model.init_from`` loaded the pretrained backbone; a frozen copy filled in the first
step, as in :mod:`tljax.methods.l2sp`) and is run in evaluation mode. The old head is
*not* part of the fine-tuned model (``init_include`` usually re-initialises the head for
the new label set), so it is read from the pretrained run's checkpoint: ``old_head_from``
is that run's workdir (normally the same as ``model.init_from``) and its
``model/head/{kernel,bias}`` give both the frozen ``C_o⁰`` (non-trainable state under
``method/``) and the initial value of the trainable ``C_o`` (parameters under
``method/old_head/``, covered by the freezing rules like any other). The old head sits
on ``features`` (the bottleneck output when there is one), so the pretrained and the
new model must have the same feature width.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.losses.regularizers import lwf_distillation
from tljax.methods import _steps
from tljax.methods.base import (
    Buffer,
    Method,
    ModelInfo,
    frozen_copy,
    records_hparams,
    require_classifier,
)
from tljax.methods.l2sp import START, check_bn_stats

HEAD_KEYS = ("model/head/kernel", "model/head/bias")


class LwFNet(nnx.Module):
    """The frozen starting model, the frozen original old head and the trainable old head."""

    def __init__(self, model: nnx.Module, kernel: np.ndarray, bias: np.ndarray, rngs: nnx.Rngs):
        self.start = frozen_copy(model)
        self.old_head = nnx.Linear(kernel.shape[0], kernel.shape[1], rngs=rngs)
        self.old_head.kernel.set_value(jnp.asarray(kernel, jnp.float32))
        self.old_head.bias.set_value(jnp.asarray(bias, jnp.float32))
        self.teacher_kernel = Buffer(jnp.asarray(kernel, jnp.float32))
        self.teacher_bias = Buffer(jnp.asarray(bias, jnp.float32))


def load_old_head(workdir: str, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(kernel (d, K_old), bias (K_old,))`` of the run in ``workdir``.

    Raises:
      ValueError: if the checkpoint has no head or its input width is not ``feature_dim``.
      CheckpointError: if ``workdir`` has no readable checkpoint.
    """
    from tljax.checkpoint import load_trained

    params, _ = load_trained(workdir)
    missing = [k for k in HEAD_KEYS if k not in params]
    if missing:
        raise ValueError(f"lwf: the checkpoint in {workdir} has no {missing}.")
    kernel, bias = (np.asarray(params[k], np.float32) for k in HEAD_KEYS)
    if kernel.shape[0] != feature_dim:
        raise ValueError(
            f"lwf: the old head in {workdir} takes {kernel.shape[0]}-d features but this "
            f"model's features are {feature_dim}-d; use the same backbone/bottleneck."
        )
    return kernel, bias


@records_hparams
def make(*, old_head_from: str = "", temperature: float = 3.0, bn_stats: str = "adapt") -> Method:
    """Builds LwF.

    Args:
      old_head_from: workdir of the pretrained run whose head is the old task's head
        (normally the same as ``config.model.init_from``).
      temperature: distillation temperature ``T > 0``.
      bn_stats: ``"adapt"`` or ``"frozen"`` BatchNorm statistics during training.

    Raises:
      ValueError: for an empty ``old_head_from``, a non-positive temperature or a bad
        ``bn_stats``.
    """
    if not old_head_from:
        raise ValueError(
            "lwf: set old_head_from to the workdir of the pretrained run (usually the same "
            "as config.model.init_from); its head is the old task's head."
        )
    if not temperature > 0:
        raise ValueError(f"lwf: temperature must be > 0, got {temperature!r}.")
    check_bn_stats(bn_stats, "lwf")

    def init(rngs: nnx.Rngs, info: ModelInfo) -> LwFNet:
        model = require_classifier(info, "lwf")
        kernel, bias = load_old_head(old_head_from, info.feature_dim)
        return LwFNet(model, kernel, bias, rngs)

    def penalty(ctx: _steps.StepContext, src, images):
        ref = ctx.ref.method
        _, out0 = ref.start(images)
        f0 = out0["features"].astype(jnp.float32)
        teacher = f0 @ ref.teacher_kernel.get_value() + ref.teacher_bias.get_value()
        student = ctx.net.method.old_head(src.features).astype(jnp.float32)
        value = lwf_distillation(student, teacher, temperature=temperature)
        agree = jnp.mean(jnp.argmax(student, -1) == jnp.argmax(teacher, -1))
        return value, {"old_task_agreement": agree}

    return Method(
        name="lwf",
        init=init,
        train_step=_steps.finetune_step(
            name="lwf", penalty=penalty, capture_at=START, bn_stats=bn_stats
        ),
        needs_target=False,
    )

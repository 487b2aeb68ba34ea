r"""L2-SP: fine-tuning with the starting point as the reference (Li, Grandvalet & Davoine,
"Explicit Inductive Bias for Transfer Learning with Convolutional Networks", ICML 2018).

.. math::
   L(w) = \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\Big(\tfrac{\alpha}{2}\lVert w_S - w_S^0
   \rVert_2^2 + \tfrac{\beta}{2}\lVert w_{\bar S}\rVert_2^2\Big)

``w⁰`` is the model at the start of the run, i.e. *after* ``model.init_from`` loaded the
pretrained weights; ``S`` are the parameters shared with the pretrained model (regex
``shared``, by default the parameters ``model.init_include`` copies) and ``S̄`` the new
ones (the new head), which get plain weight decay. ``λ`` is ``config.method.weight``
(default 1). TLlib's ``SPRegularization`` + ``L2Regularization`` with their trade-offs
0.01 are ``alpha = beta = 0.01`` here (the paper tunes α ∈ {1e-3…1}, β = 0.01); set
``optim.weight_decay = 0`` so the only decay is β's, as in the paper.

Implementation: the method's own module holds a frozen copy of the model
(:func:`~tljax.methods.base.frozen_copy`, non-trainable ``Buffer`` state in ``rest``
under ``method/start``). ``Method.init`` runs before ``init_from`` loads the weights, so
the copy is (re)filled with the model's parameters and BatchNorm state inside the first
train step (:func:`tljax.methods._steps.capture_start`); it is checkpointed with the run,
so resuming keeps ``w⁰``. The penalty needs the current parameters, which a method loss
does not receive, so L2-SP brings its own step (:func:`tljax.methods._steps.
finetune_step`: the default step on the source batch, plus the penalty). Loss:
:func:`tljax.losses.regularizers.l2sp`.
"""

from __future__ import annotations

import re

from flax import nnx

from tljax.losses.regularizers import l2sp
from tljax.methods import _steps
from tljax.methods.base import (
    Method,
    ModelInfo,
    frozen_copy,
    records_hparams,
    require_classifier,
)

START = ("method", "start")  # where the frozen starting point lives in ``rest``
DEFAULT_SHARED = r"^model/(backbone|bottleneck)/"  # = config.model.init_include's default


class StartingPoint(nnx.Module):
    """Holds a frozen copy of the model (weights as non-trainable ``Buffer`` variables)."""

    def __init__(self, model: nnx.Module):
        self.start = frozen_copy(model)


def starting_params(rest: dict, params: dict) -> dict:
    """``w⁰``: the leaves of the frozen copy at ``rest["method"]["start"]`` that are
    parameters of the model, in the structure of ``params["model"]``."""

    def pick(tree, like):
        if isinstance(like, dict):
            return {k: pick(tree[k], v) for k, v in like.items()}
        return tree

    return pick(rest["method"]["start"], params["model"])


def shared_predicate(pattern: str, method: str):
    """``path -> bool`` over model-relative paths (``backbone/conv1/kernel``): whether
    ``"model/" + path`` matches ``pattern``.

    Raises:
      ValueError: if ``pattern`` is not a valid regex.
    """
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{method}: shared={pattern!r} is not a valid regex: {e}") from e
    return lambda path: bool(regex.search("model/" + path))


check_bn_stats = _steps.check_bn_stats  # raises ValueError unless "adapt" or "frozen"


@records_hparams
def make(
    *,
    alpha: float = 0.01,
    beta: float = 0.01,
    shared: str = DEFAULT_SHARED,
    bn_stats: str = "adapt",
) -> Method:
    """Builds L2-SP.

    Args:
      alpha: weight α of ``½‖w_S − w⁰_S‖²``.
      beta: weight β of ``½‖w_S̄‖²`` on the parameters not matched by ``shared``.
      shared: regex over parameter paths (``model/backbone/conv1/kernel``) of the
        parameters pulled towards their starting point.
      bn_stats: ``"adapt"`` or ``"frozen"`` BatchNorm statistics during training
        (see :func:`tljax.methods._steps.finetune_step`).

    Raises:
      ValueError: for a negative weight, a bad regex or ``bn_stats``.
    """
    if not (alpha >= 0 and beta >= 0):
        raise ValueError(f"l2sp: alpha and beta must be >= 0, got alpha={alpha!r}, beta={beta!r}.")
    is_shared = shared_predicate(shared, "l2sp")
    check_bn_stats(bn_stats, "l2sp")

    def init(rngs: nnx.Rngs, info: ModelInfo) -> StartingPoint:
        del rngs
        return StartingPoint(require_classifier(info, "l2sp"))

    def penalty(ctx: _steps.StepContext, src, images):
        del src, images
        w0 = starting_params(ctx.rest, ctx.params)
        value = l2sp(ctx.params["model"], w0, alpha=alpha, beta=beta, shared_mask=is_shared)
        return value, {}

    return Method(
        name="l2sp",
        init=init,
        train_step=_steps.finetune_step(
            name="l2sp", penalty=penalty, capture_at=START, bn_stats=bn_stats
        ),
        needs_target=False,
    )

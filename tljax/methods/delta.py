r"""DELTA: deep learning transfer using feature-map distances with attention (Li, Xiong,
Wang, Liu, Zhu & Huan, ICLR 2019).

.. math::
   L(w) = \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\Big(\alpha \sum_{j}
   \Omega_j(w, w^0, x) + \tfrac{\beta}{2}\lVert w_{\bar S}\rVert_2^2\Big),
   \qquad \Omega_j = \tfrac12 \sum_{b,c} a_{jc}\, \lVert FM_{jc}(w, x_b)
   - FM_{jc}(w^0, x_b)\rVert_2^2

The fine-tuned network's feature maps ``FM_j`` (layers ``layers``) are pulled towards
those of the *frozen starting model* ``w⁰`` on the same batch, instead of pulling the
weights (L2-SP); the new parameters ``S̄`` (not matched by ``shared``: the new head) get
weight decay ``β``. Without ``channel_weights`` every channel counts equally (TLlib's
``BehavioralRegularization``, ``a = 1``); with them, layer ``j``'s distance is TLlib's
``AttentionBehavioralRegularization`` ``½ Σ_b Σ_c C·a_c ‖Δ_bc‖² / (HW)`` with ``a``
summing to 1. TLlib computes ``a`` from the loss increase when each channel of the
pretrained network is zeroed (:func:`channel_attention` turns such increases into
weights; measuring them is left to the user). ``λ`` is ``config.method.weight``; TLlib's
``delta.py`` defaults are ``α = β = 0.01`` (trade-off backbone/head), no weight decay.

Implementation: as :mod:`tljax.methods.l2sp`, a frozen copy of the model (``rest`` under
``method/start``) is filled with the starting point in the first step, and the method has
its own step (:func:`tljax.methods._steps.finetune_step`, source batch only). The
reference network runs in evaluation mode (BatchNorm with its running statistics, as
TLlib's ``source_classifier.eval()``); its outputs carry no gradient. Layers are named by
the model's outputs: LeNet ``conv1``/``conv2``, ResNet ``layer1``…``layer4`` (block
outputs; TLlib taps each stage's last ``conv3``), ``backbone_features`` or ``features``.
By default all 4-D (feature-map) outputs are used. Loss:
:func:`tljax.losses.regularizers.delta_feature_loss`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.losses.regularizers import delta_feature_loss, l2sp
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, records_hparams, require_classifier
from tljax.methods.l2sp import (
    DEFAULT_SHARED,
    START,
    StartingPoint,
    check_bn_stats,
    shared_predicate,
)


def channel_attention(loss_increase: np.ndarray, *, temperature: float = 5.0) -> np.ndarray:
    """TLlib's channel attention from per-channel loss increases: ``softmax(z / T)`` with
    ``z`` the standardised increases (``(d − mean) / std``).

    Args:
      loss_increase: ``(C,)`` loss increase of the pretrained network on the new data
        when each channel of the layer is zeroed.
      temperature: ``T > 0`` (TLlib: 5).

    Returns:
      ``(C,)`` float32 weights summing to 1.

    Raises:
      ValueError: for a non-1-D input or a non-positive temperature.
    """
    d = np.asarray(loss_increase, np.float64)
    if d.ndim != 1 or d.size < 1 or not temperature > 0:
        raise ValueError(
            f"channel_attention: need a non-empty (C,) array and temperature > 0, got shape "
            f"{d.shape} and temperature={temperature!r}."
        )
    z = (d - d.mean()) / max(float(d.std()), 1e-12) / temperature
    e = np.exp(z - z.max())
    return (e / e.sum()).astype(np.float32)


def _pick(out: Mapping, names: Sequence[str], what: str) -> list:
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(
            f"delta: layer(s) {missing} are not outputs of the {what}; available: {sorted(out)}."
        )
    return [out[n] for n in names]


@records_hparams
def make(
    *,
    alpha: float = 0.01,
    beta: float = 0.01,
    layers: Sequence[str] | None = None,
    channel_weights: Mapping[str, Sequence[float]] | None = None,
    shared: str = DEFAULT_SHARED,
    bn_stats: str = "adapt",
) -> Method:
    """Builds DELTA.

    Args:
      alpha: weight α of the feature-map distance.
      beta: weight β of ``½‖w‖²`` on the parameters not matched by ``shared``.
      layers: names of the model outputs to regularise; ``None``: every 4-D output.
      channel_weights: optional ``{layer: (C,) weights}`` (channels last); layers not
        listed use the unweighted distance.
      shared: regex of the pretrained parameters (the others get β decay).
      bn_stats: ``"adapt"`` or ``"frozen"`` BatchNorm statistics during training.

    Raises:
      ValueError: for a negative weight, empty ``layers``, weights for a layer not in
        ``layers``, non-1-D weights, a bad regex or ``bn_stats``.
    """
    if not (alpha >= 0 and beta >= 0):
        raise ValueError(f"delta: alpha and beta must be >= 0, got alpha={alpha!r}, beta={beta!r}.")
    if layers is not None:
        layers = tuple(layers)
        if not layers:
            raise ValueError("delta: layers must name at least one output (or be None).")
    weights = {}
    for name, w in dict(channel_weights or {}).items():
        if layers is not None and name not in layers:
            raise ValueError(f"delta: channel_weights given for {name!r}, not in layers {layers}.")
        arr = np.asarray(w, np.float32)
        if arr.ndim != 1:
            raise ValueError(f"delta: channel_weights[{name!r}] must be 1-D, got {arr.shape}.")
        weights[name] = arr
    is_shared = shared_predicate(shared, "delta")
    check_bn_stats(bn_stats, "delta")

    def init(rngs: nnx.Rngs, info: ModelInfo) -> StartingPoint:
        del rngs
        return StartingPoint(require_classifier(info, "delta"))

    def penalty(ctx: _steps.StepContext, src, images):
        out = {**src.extras, "features": src.features}
        names = layers or tuple(sorted(k for k, v in out.items() if v.ndim == 4))
        if not names:
            raise ValueError(
                f"delta: the model has no 4-D feature maps; pass layers= from {sorted(out)}."
            )
        _, out0 = ctx.ref.method.start(images)
        feats = [f.astype(jnp.float32) for f in _pick(out, names, "model")]
        feats0 = [f.astype(jnp.float32) for f in _pick(out0, names, "starting model")]
        ws = [jnp.asarray(weights[n]) if n in weights else None for n in names]
        distance = delta_feature_loss(feats, feats0, ws)
        model_params = ctx.params["model"]
        head = l2sp(model_params, model_params, alpha=0.0, beta=1.0, shared_mask=is_shared)
        value = alpha * distance + beta * head
        return value, {"feature_distance": distance, "head_l2": head}

    hp = dict(  # normalised; the other hyperparameters are recorded as given
        layers=layers,
        channel_weights={k: tuple(map(float, v)) for k, v in weights.items()} or None,
    )
    return Method(
        name="delta",
        init=init,
        train_step=_steps.finetune_step(
            name="delta", penalty=penalty, capture_at=START, bn_stats=bn_stats
        ),
        hparams=hp,
        needs_target=False,
    )

"""``config.model.pretrained``: published weights loaded into a classifier's backbone.

The trainer builds the classifier (backbone → optional bottleneck → new head), then
loads the file(s) at ``config.model.pretrained`` into the *backbone* in place, before
the method's own networks are built (:func:`tljax.train.build_net`). So every copy a
method makes of the model at ``Method.init`` (the mean teacher, ADDA's target encoder,
L2-SP / LwF's starting point) starts from the published weights too, and
``config.model.init_from`` (applied afterwards) can still override any part. A resumed
run restores its checkpoint over them.

Loaders by backbone:

* ``bert``: a Hugging Face model directory (``config.json`` + ``model.safetensors``, or
  ``pytorch_model.bin`` with torch installed) or one weights file (``.safetensors``,
  ``.bin``, ``.pth``) with ``BertModel`` keys (or ``bert.``-prefixed ones; task heads are
  dropped) — :func:`tljax.models.weights.load_hf_bert`. For a directory,
  ``model.backbone_kwargs.config`` defaults to its ``config.json``.
* ``gpt2``: the same for Hugging Face ``GPT2Model`` keys (or ``transformer.``-prefixed
  ones; a tied ``lm_head.weight`` is accepted, task heads dropped) —
  :func:`tljax.models.gpt2.load_hf_gpt2`; ``config`` as for ``bert``.
* ``vit_b16``/``vit_s16``/``vit_tiny``: a Hugging Face model directory or weights file
  with ``ViTModel`` keys (or ``vit.``-prefixed ones; the classifier is dropped); position
  embeddings for another image size are resized bicubically —
  :func:`tljax.models.vit.load_hf_vit`.
* ``resnet18/34/50/101``: a torchvision state dict (``.pth``/``.pt`` with torch, or
  ``.safetensors``); its ``fc`` (ImageNet head) is dropped —
  :func:`tljax.models.weights.load_torchvision_resnet`.
* ``vgg11/13/16/19`` and their ``_bn`` variants: a torchvision state dict; its
  ``classifier.6`` (ImageNet head) is dropped, and all of ``classifier.*`` for a model
  built with ``fc_stack=False`` — :func:`tljax.models.vgg.load_torchvision_vgg`.
* ``inception_v3``: a torchvision state dict; its ``fc`` and ``AuxLogits.fc`` are
  dropped (and all of ``AuxLogits.*`` for a model without the auxiliary head);
  ``transform_input`` defaults to ``True`` —
  :func:`tljax.models.inception.load_torchvision_inception`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from flax import nnx

log = logging.getLogger("tljax")

_BERT_FILES = ("model.safetensors", "pytorch_model.bin")


def _bert_weights(path: str) -> str:
    if not os.path.isdir(path):
        return path
    for name in _BERT_FILES:
        if os.path.exists(os.path.join(path, name)):
            return os.path.join(path, name)
    raise FileNotFoundError(
        f"config.model.pretrained={path!r} is a directory without weights: expected one of "
        f"{list(_BERT_FILES)} (a Hugging Face model directory)."
    )


def _load_bert(backbone: nnx.Module, path: str) -> None:
    from tljax.models.weights import load_hf_bert, read_state_dict

    load_hf_bert(backbone, read_state_dict(_bert_weights(path)))


def _load_gpt2(backbone: nnx.Module, path: str) -> None:
    from tljax.models.gpt2 import load_hf_gpt2
    from tljax.models.weights import read_state_dict

    load_hf_gpt2(backbone, read_state_dict(_bert_weights(path)))


def _load_vit(backbone: nnx.Module, path: str) -> None:
    from tljax.models.vit import load_hf_vit
    from tljax.models.weights import read_state_dict

    load_hf_vit(backbone, read_state_dict(_bert_weights(path)))


def _load_resnet(backbone: nnx.Module, path: str) -> None:
    from tljax.models.weights import load_torchvision_resnet, read_state_dict

    if os.path.isdir(path):
        raise ValueError(
            f"config.model.pretrained={path!r} is a directory; a ResNet takes one torchvision "
            "weights file (.pth, .pt or .safetensors)."
        )
    load_torchvision_resnet(backbone, read_state_dict(path), include_head=False)


def _torchvision_file(path: str, what: str) -> str:
    if os.path.isdir(path):
        raise ValueError(
            f"config.model.pretrained={path!r} is a directory; {what} takes one torchvision "
            "weights file (.pth, .pt or .safetensors)."
        )
    return path


def _load_vgg(backbone: nnx.Module, path: str) -> None:
    from tljax.models.vgg import load_torchvision_vgg
    from tljax.models.weights import read_state_dict

    load_torchvision_vgg(backbone, read_state_dict(_torchvision_file(path, "a VGG")))


def _load_inception(backbone: nnx.Module, path: str) -> None:
    from tljax.models.inception import load_torchvision_inception
    from tljax.models.weights import read_state_dict

    sd = read_state_dict(_torchvision_file(path, "Inception-v3"))
    load_torchvision_inception(backbone, sd)


_LOADERS: dict[str, Callable[[nnx.Module, str], None]] = {
    "bert": _load_bert,
    "gpt2": _load_gpt2,
    **{f"vit_{size}": _load_vit for size in ("b16", "s16", "tiny")},
    **{f"resnet{d}": _load_resnet for d in (18, 34, 50, 101)},
    **{f"vgg{d}{bn}": _load_vgg for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "inception_v3": _load_inception,
}


def register_loader(backbone: str, loader: Callable[[nnx.Module, str], None]) -> None:
    """Registers ``loader(backbone_module, path)`` for a backbone name."""
    _LOADERS[backbone] = loader


def loader_names() -> list[str]:
    """Backbones that ``config.model.pretrained`` can load weights into."""
    return sorted(_LOADERS)


def _check(backbone: str, path: str) -> str:
    if backbone not in _LOADERS:
        raise ValueError(
            f"config.model.pretrained={path!r} is set but backbone {backbone!r} has no "
            f"weights loader; backbones with one: {loader_names()}. Leave "
            "model.pretrained empty, or use model.init_from to start from a tljax run."
        )
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"config.model.pretrained={path!r} does not exist; expected "
            + (
                "a Hugging Face model directory (config.json + model.safetensors) or a "
                ".safetensors file."
                if backbone == "bert" or backbone.startswith(("gpt2", "vit_"))
                else "a torchvision weights file (.pth or .safetensors)."
            )
        )
    return path


def backbone_kwargs(backbone: str, kwargs: dict, path: str) -> dict:
    """The backbone's keyword arguments, completed from the pretrained files: for
    ``bert`` or ``gpt2`` with a model directory and no ``config`` given, ``config`` is its
    ``config.json``; for a ResNet with torchvision weights, BatchNorm updates its running
    variance with PyTorch's unbiased batch variance (``bn_unbiased_running_var=True``)
    unless ``kwargs`` sets it.

    Raises:
      ValueError: for a backbone without a loader, or ``bert`` weights given as a single
        file without ``backbone_kwargs.config``.
      FileNotFoundError: if ``path`` does not exist.
    """
    path = _check(backbone, path)
    if backbone == "inception_v3":
        # torchvision's Inception weights (ported from TensorFlow) expect inputs in
        # [-1, 1]; transform_input maps ImageNet-normalised images there, as
        # torchvision.models.inception_v3(weights=...) does.
        return {"bn_unbiased_running_var": True, "transform_input": True, **kwargs}
    if backbone.startswith(("resnet", "vgg")):
        # torchvision's weights: keep their running statistics as PyTorch updates them
        # (unbiased running variance), unless the config says otherwise.
        return {"bn_unbiased_running_var": True, **kwargs}
    if backbone not in ("bert", "gpt2") or kwargs.get("config"):
        return kwargs
    config = os.path.join(path, "config.json")
    if not (os.path.isdir(path) and os.path.exists(config)):
        raise ValueError(
            f"config.model.pretrained={path!r} has no config.json beside it; set "
            "config.model.backbone_kwargs.config to the model's HF config.json."
        )
    return {**kwargs, "config": config}


def load(backbone_module: nnx.Module, backbone: str, path: str) -> None:
    """Loads the weights at ``path`` into ``backbone_module`` (in place).

    Raises:
      ValueError: for a backbone without a loader, or weights that do not fit (the
        loader lists missing, unexpected and mis-shaped keys).
      FileNotFoundError: if ``path`` (or a directory's weights file) does not exist.
    """
    path = _check(backbone, path)
    _LOADERS[backbone](backbone_module, path)
    log.info("Loaded pretrained %s weights from %s", backbone, path)


__all__ = ["backbone_kwargs", "load", "loader_names", "register_loader"]

"""Import of published weights: torchvision ResNets and Hugging Face BERT checkpoints.

A state dict here is a ``dict[str, np.ndarray]`` keyed the PyTorch way
(``layer1.0.conv1.weight``). :func:`read_state_dict` reads one from ``.safetensors``
(``safetensors.numpy``, no torch needed) or ``.pth``/``.pt``/``.bin`` (``torch.load`` with
``weights_only=True`` only — a pickle that needs arbitrary code is refused, never run).

The loaders map every parameter and BatchNorm statistic of our module to a PyTorch key,
convert the layout (conv kernels OIHW → HWIO, linear weights transposed) and update the
module **in place** (``nnx.update``); they return ``None``. They are strict: unless every
expected key is present with the right shape and no key is left over, nothing is written
and a ``ValueError`` lists the missing, unexpected and mis-shaped keys. Keys PyTorch keeps
as bookkeeping (``num_batches_tracked``, BERT's ``position_ids`` buffer) are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np
from flax import nnx

from tljax.errors import MissingDependencyError, UserFileError

_IGNORED_SUFFIXES = ("num_batches_tracked", "position_ids", "token_type_ids")

# A torch key plus the function turning the torch array into ours, or None to skip.
Target = tuple[str, Callable[[np.ndarray], np.ndarray]] | None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch-style state dict into NumPy arrays, dispatching on the extension.

    Args:
      path: a ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` file (needs torch).

    Returns:
      ``{key: array}``; a ``.pth`` holding ``{"state_dict": ...}`` or ``{"model": ...}``
      is unwrapped.

    Raises:
      ValueError: for another extension, or a file that is not a dict of tensors.
      tljax.errors.MissingDependencyError: (an ``ImportError``) when the reader's package
        (``safetensors`` / ``torch``) is missing.
      tljax.errors.UserFileError: (an ``OSError``) for a file that cannot be read or parsed,
        incl. a ``.pth`` holding anything but tensors and containers (such files are not
        loaded).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise MissingDependencyError(
                "Reading .safetensors needs `pip install safetensors`."
            ) from e
        try:
            return dict(load_file(path))
        except Exception as e:  # safetensors raises its own SafetensorError on garbage
            raise UserFileError(f"Cannot read weights file {path!r} as .safetensors: {e}.") from e
    if ext in (".pth", ".pt", ".bin"):
        try:
            import torch
        except ImportError as e:
            raise MissingDependencyError(
                f"Reading {ext} files needs PyTorch; install torch or convert the file to "
                ".safetensors."
            ) from e
        # weights_only=True: torch's restricted unpickler; never execute a pickle's code.
        try:
            obj = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as e:  # garbage, truncated, or a pickle of non-tensors
            raise UserFileError(
                f"Cannot read weights file {path!r} with torch.load(weights_only=True): "
                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}."
            ) from e
        for wrapper in ("state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict.")
        out = {}
        for k, v in obj.items():
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor.")
            out[k] = v.detach().cpu().float().numpy() if v.is_floating_point() else v.numpy()
        return out
    raise ValueError(
        f"Cannot read weights from {path!r}: extension {ext!r}; valid: "
        "'.safetensors', '.pth', '.pt', '.bin'."
    )


def _hwio(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _load(
    model: nnx.Module,
    state_dict: Mapping[str, np.ndarray],
    target: Callable[[tuple], Target],
    what: str,
) -> None:
    """Maps each model variable through ``target`` and writes the converted arrays."""
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    pure = nnx.to_pure_dict(state)
    expected: dict[str, tuple[tuple, Callable, tuple, np.dtype]] = {}
    for path, var in nnx.to_flat_state(state):
        t = target(path)
        if t is not None:
            expected[t[0]] = (path, t[1], tuple(var.get_value().shape), var.get_value().dtype)
    given = {k for k in state_dict if not k.endswith(_IGNORED_SUFFIXES)}
    missing = sorted(set(expected) - given)
    unexpected = sorted(given - set(expected))
    mismatched, converted = [], {}
    for key in sorted(set(expected) & given):
        path, fn, shape, dtype = expected[key]
        arr = fn(np.asarray(state_dict[key]))
        if tuple(arr.shape) != shape:
            mismatched.append(
                f"{key}: {tuple(np.shape(state_dict[key]))} in the state dict, converted "
                f"{tuple(arr.shape)} but model {'/'.join(map(str, path))} has {shape}"
            )
        converted[path] = arr.astype(dtype)
    if missing or unexpected or mismatched:
        lines = [f"Cannot load {what} weights:"]
        for name, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if items:
                lines.append(f"  {name} ({len(items)}): " + "; ".join(items))
        raise ValueError("\n".join(lines))
    for path, arr in converted.items():
        node = pure
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = arr
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


_RESNET_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def load_torchvision_resnet(
    model: nnx.Module,
    state_dict: Mapping[str, np.ndarray],
    *,
    include_head: bool = False,
) -> None:
    """Loads a torchvision ResNet state dict into a :class:`tljax.models.resnet.ResNet`.

    Updates ``model`` in place. Conv kernels go OIHW → HWIO, ``fc.weight`` is transposed,
    BatchNorm ``running_mean``/``running_var`` go to the ``mean``/``var`` batch statistics.

    Args:
      model: the ResNet (e.g. ``resnet50((224, 224, 3), rngs=...)``, or a
        ``Classifier``'s ``.backbone``); a single block also works.
      state_dict: torchvision keys → arrays (see :func:`read_state_dict`).
      include_head: load ``fc`` too (the model must have been built with the same
        ``num_classes``); ``False`` drops the state dict's ``fc.*`` and leaves the model's
        own ``fc`` (if any) as initialised.

    Raises:
      ValueError: if keys are missing, unexpected or mis-shaped (all listed), or if
        ``include_head`` is set on a model without ``fc``.
    """
    if not hasattr(model, "conv1"):
        raise ValueError(
            f"load_torchvision_resnet needs the ResNet module itself, got a "
            f"{type(model).__name__}; for a Classifier pass classifier.backbone."
        )
    if include_head and getattr(model, "fc", None) is None:
        raise ValueError(
            "include_head=True but the model has no fc head; build it with num_classes "
            "(1000 for ImageNet) or pass include_head=False."
        )
    if not include_head:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}

    def target(path: tuple) -> Target:
        *mods, leaf = (str(p) for p in path)
        if mods[0] == "fc" and not include_head:
            return None
        if mods[-2:-1] == ["downsample"]:
            mods[-1] = {"conv": "0", "bn": "1"}[mods[-1]]
        prefix = ".".join(mods)
        if leaf == "kernel":
            return f"{prefix}.weight", (_hwio if mods[0] != "fc" else np.transpose)
        return f"{prefix}.{_RESNET_LEAF[leaf]}", _same

    _load(model, state_dict, target, "torchvision ResNet")


_BERT_LAYER = {
    "attention/query": "attention.self.query",
    "attention/key": "attention.self.key",
    "attention/value": "attention.self.value",
    "attention/out": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "output_norm": "output.LayerNorm",
}


def _hf_bert_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strips ``bert.`` (dropping task heads such as ``cls.*``) and renames gamma/beta."""
    if any(k.startswith("bert.") for k in state_dict):
        state_dict = {k[5:]: v for k, v in state_dict.items() if k.startswith("bert.")}
    out = {}
    for k, v in state_dict.items():
        if k.endswith(".gamma") or k.endswith(".beta"):  # old TF-converted checkpoints
            k = k.rsplit(".", 1)[0] + (".weight" if k.endswith("gamma") else ".bias")
        out[k] = v
    return out


def load_hf_bert(model: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> None:
    """Loads Hugging Face ``BertModel`` weights into a :class:`tljax.models.bert.Bert`.

    Updates ``model`` in place. Accepts the key names of ``BertModel``
    (``embeddings.word_embeddings.weight``, ``encoder.layer.N.attention.self.query.weight``,
    ``pooler.dense.weight``…) or of models with a ``bert.`` prefix (``BertForPreTraining``
    etc.; keys outside the prefix, i.e. task heads, are dropped). Linear weights are
    transposed. A checkpoint's pooler is dropped when the model has none.

    Raises:
      ValueError: if keys are missing, unexpected or mis-shaped (all listed).
    """
    if not hasattr(model, "embeddings"):
        raise ValueError(
            f"load_hf_bert needs the Bert module itself, got a {type(model).__name__}; "
            "for a Classifier pass classifier.backbone."
        )
    state_dict = _hf_bert_keys(state_dict)
    if getattr(model, "pooler", None) is None:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("pooler.")}

    def target(path: tuple) -> Target:
        *mods, leaf = (str(p) for p in path)
        if mods[0] == "embeddings":
            name = "LayerNorm" if mods[1] == "layer_norm" else mods[1]
            prefix = f"embeddings.{name}"
        elif mods[0] == "layers":
            prefix = f"encoder.layer.{mods[1]}.{_BERT_LAYER['/'.join(mods[2:])]}"
        else:
            prefix = "pooler.dense"
        if leaf == "kernel":
            return f"{prefix}.weight", np.transpose
        suffix = {"embedding": "weight", "scale": "weight", "bias": "bias"}[leaf]
        return f"{prefix}.{suffix}", _same

    _load(model, state_dict, target, "Hugging Face BERT")


def resnet_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """The inverse of :func:`load_torchvision_resnet` (``fc`` included if present).

    Useful to export to PyTorch and to test the key mapping round trip.
    """
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    out = {}
    for path, var in nnx.to_flat_state(state):
        *mods, leaf = (str(p) for p in path)
        if mods[-2:-1] == ["downsample"]:
            mods[-1] = {"conv": "0", "bn": "1"}[mods[-1]]
        a = np.asarray(var.get_value())
        if leaf == "kernel":
            a = np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a.T
        out[".".join(mods) + "." + _RESNET_LEAF[leaf]] = a
        if leaf == "var":
            out[".".join(mods) + ".num_batches_tracked"] = np.zeros((), np.int64)
    return out


__all__ = ["load_hf_bert", "load_torchvision_resnet", "read_state_dict", "resnet_state_dict"]

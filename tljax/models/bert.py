"""A BERT encoder (Devlin et al., NAACL 2019) built from a Hugging Face ``config.json``.

The computation is that of ``transformers.BertModel``: word + absolute position + token-type
embeddings → LayerNorm, then ``num_hidden_layers`` post-LN blocks (multi-head
self-attention with a padding mask → dense → residual → LayerNorm; dense → GELU (exact,
erf) → dense → residual → LayerNorm). Weights load from HF safetensors with
:func:`tljax.models.weights.load_hf_bert`; :func:`from_pretrained_dir` does both steps.

Calling convention (the trainer calls ``backbone(x)`` with one array): ``x`` is an integer
array, either

* ``(n, seq)``: token ids; every position is attended to;
* ``(n, 2, seq)``: ``x[:, 0]`` token ids, ``x[:, 1]`` attention mask (1 = token, 0 = pad);
* ``(n, 3, seq)``: as above plus ``x[:, 2]`` token-type (segment) ids.

:func:`pack_inputs` builds it from ``(ids, mask)`` as returned by
:meth:`tljax.data.text.TextTokenizer.encode_batch`. The call may also pass
``attention_mask=`` / ``token_type_ids=`` explicitly with 2-D ids.

Outputs: ``"features"`` the mask-aware mean of the last hidden states (sentence-transformers'
mean pooling), ``"hidden_states"`` ``(n, seq, hidden)``, ``"cls"`` the first token's hidden
state and, when the model has a pooler, ``"pooled"`` = ``tanh(dense(cls))``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.resnet import host_normal_init

_INIT = host_normal_init(lambda shape: 0.02)  # HF's initializer_range default
_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}
_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


def read_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Validates a HF BERT config (a dict, a ``config.json`` path or its directory).

    Returns:
      The config as a dict with defaults filled in (``type_vocab_size`` 2,
      ``layer_norm_eps`` 1e-12, ``hidden_act`` ``"gelu"``, dropouts 0.1).

    Raises:
      ValueError: when a required key is missing or a value is unsupported.
    """
    if not isinstance(config, Mapping):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    cfg = {
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        **config,
    }
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"BERT config lacks {missing}; required keys: {list(_REQUIRED)}.")
    if cfg.get("model_type", "bert") != "bert":
        raise ValueError(f"Expected a BERT config, got model_type={cfg['model_type']!r}.")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"Unsupported position_embedding_type={cfg['position_embedding_type']!r}; "
            "only 'absolute' is implemented."
        )
    if cfg["hidden_act"] not in _ACTIVATIONS:
        raise ValueError(
            f"Unsupported hidden_act={cfg['hidden_act']!r}; valid: {sorted(_ACTIVATIONS)}."
        )
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ValueError(
            f"hidden_size={cfg['hidden_size']} is not divisible by "
            f"num_attention_heads={cfg['num_attention_heads']}."
        )
    return cfg


def _linear(i: int, o: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(i, o, kernel_init=_INIT, rngs=rngs)


def _norm(dim: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance (E[(x-mean)^2]), as PyTorch; the fast E[x^2]-mean^2 loses digits.
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, rngs=rngs)


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    return nnx.Dropout(rate, rngs=rngs) if rate > 0 else None


def _apply(dropout: nnx.Dropout | None, x: jax.Array) -> jax.Array:
    return x if dropout is None else dropout(x)


class BertEmbeddings(nnx.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, cfg: dict[str, Any], dropout: float, *, rngs: nnx.Rngs):
        h = cfg["hidden_size"]
        self.word_embeddings = nnx.Embed(cfg["vocab_size"], h, embedding_init=_INIT, rngs=rngs)
        self.position_embeddings = nnx.Embed(
            cfg["max_position_embeddings"], h, embedding_init=_INIT, rngs=rngs
        )
        self.token_type_embeddings = nnx.Embed(
            cfg["type_vocab_size"], h, embedding_init=_INIT, rngs=rngs
        )
        self.layer_norm = _norm(h, cfg["layer_norm_eps"], rngs)
        self.dropout = _dropout(dropout, rngs)

    def __call__(self, ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        pos = jnp.arange(ids.shape[1])[None, :]
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(pos)
            + self.token_type_embeddings(token_type_ids)
        )
        return _apply(self.dropout, self.layer_norm(x))


class BertAttention(nnx.Module):
    """Multi-head self-attention with a key padding mask and the output projection."""

    def __init__(self, cfg: dict[str, Any], dropout: float, *, rngs: nnx.Rngs):
        h = cfg["hidden_size"]
        self.num_heads = cfg["num_attention_heads"]
        self.query = _linear(h, h, rngs)
        self.key = _linear(h, h, rngs)
        self.value = _linear(h, h, rngs)
        self.out = _linear(h, h, rngs)
        self.dropout = _dropout(dropout, rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        n, s, h = x.shape
        d = h // self.num_heads

        def heads(t):
            return t.reshape(n, s, self.num_heads, d)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(d)
        # HF adds finfo.min to masked scores; a padded query row then attends uniformly.
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = _apply(self.dropout, jax.nn.softmax(scores, axis=-1).astype(x.dtype))
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(n, s, h)
        return self.out(ctx)


class BertLayer(nnx.Module):
    """One post-LN transformer block."""

    def __init__(self, cfg: dict[str, Any], dropout: tuple[float, float], *, rngs: nnx.Rngs):
        h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.attention = BertAttention(cfg, dropout[1], rngs=rngs)
        self.attention_norm = _norm(h, eps, rngs)
        self.intermediate = _linear(h, cfg["intermediate_size"], rngs)
        self.output = _linear(cfg["intermediate_size"], h, rngs)
        self.output_norm = _norm(h, eps, rngs)
        self.dropout = _dropout(dropout[0], rngs)
        self.act = _ACTIVATIONS[cfg["hidden_act"]]

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.attention_norm(x + _apply(self.dropout, self.attention(x, mask)))
        y = self.output(self.act(self.intermediate(x)))
        return self.output_norm(x + _apply(self.dropout, y))


class Bert(nnx.Module):
    """The BERT encoder; see the module docstring for inputs and outputs.

    Parameter paths: ``embeddings/{word,position,token_type}_embeddings/embedding``,
    ``embeddings/layer_norm``, ``layers/<i>/attention/{query,key,value,out}``,
    ``layers/<i>/{attention_norm,intermediate,output,output_norm}``, ``pooler``.

    Args:
      config: a HF BERT config (dict, or path to ``config.json`` or its directory).
      add_pooler: build BERT's pooler (``tanh(dense(cls))``, output ``"pooled"``).
      dropout: ``None`` uses the config's ``hidden_dropout_prob`` and
        ``attention_probs_dropout_prob`` in training mode (needs a ``dropout`` rng
        stream); a float sets both; ``0.0`` (the default) builds no dropout at all, which
        keeps the module free of RNG state for the functional trainer.
      rngs: NNX random streams.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | os.PathLike,
        *,
        add_pooler: bool = True,
        dropout: float | None = 0.0,
        rngs: nnx.Rngs,
    ):
        cfg = read_config(config)
        if dropout is None:
            rates = (cfg["hidden_dropout_prob"], cfg["attention_probs_dropout_prob"])
        else:
            rates = (float(dropout), float(dropout))
        # Kept as a tuple of scalar items: NNX graph definitions must be hashable.
        self.config_items = tuple(
            (k, v) for k, v in sorted(cfg.items()) if isinstance(v, (bool, int, float, str))
        )
        self.embeddings = BertEmbeddings(cfg, rates[0], rngs=rngs)
        self.layers = nnx.List(
            [BertLayer(cfg, rates, rngs=rngs) for _ in range(cfg["num_hidden_layers"])]
        )
        h = cfg["hidden_size"]
        self.pooler = _linear(h, h, rngs) if add_pooler else None
        self.feature_dim = h

    @property
    def config(self) -> dict[str, Any]:
        """The validated config (scalar entries only)."""
        return dict(self.config_items)

    def __call__(
        self,
        x: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        ids, mask, types = _unpack(x, attention_mask, token_type_ids)
        max_len = self.config["max_position_embeddings"]
        if ids.shape[1] > max_len:
            raise ValueError(f"Sequence length {ids.shape[1]} exceeds {max_len} positions.")
        h = self.embeddings(ids, types)
        for layer in self.layers:
            h = layer(h, mask)
        m = mask[..., None].astype(h.dtype)
        # sentence-transformers' mean pooling: sum over tokens / max(token count, 1e-9).
        feats = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)
        out = {"features": feats, "hidden_states": h, "cls": h[:, 0]}
        if self.pooler is not None:
            out["pooled"] = jnp.tanh(self.pooler(h[:, 0]))
        return out


def _unpack(x, attention_mask, token_type_ids):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(
            f"BERT takes integer token ids, got dtype {x.dtype}; do not cast the inputs "
            "(e.g. to bfloat16: ids above 256 would be rounded)."
        )
    if x.ndim == 3 and x.shape[1] in (2, 3):
        if attention_mask is not None or token_type_ids is not None:
            raise ValueError("Pass either a packed (n, 2|3, seq) array or separate arrays.")
        ids, attention_mask = x[:, 0], x[:, 1]
        token_type_ids = x[:, 2] if x.shape[1] == 3 else None
    elif x.ndim == 2:
        ids = x
    else:
        raise ValueError(
            f"BERT input must have shape (n, seq), (n, 2, seq) or (n, 3, seq); got {x.shape}."
        )
    mask = jnp.ones(ids.shape, bool) if attention_mask is None else attention_mask != 0
    types = jnp.zeros_like(ids) if token_type_ids is None else jnp.asarray(token_type_ids)
    return ids, mask, types


def pack_inputs(ids, mask, token_type_ids=None) -> np.ndarray:
    """Stacks ``(n, seq)`` ids, mask (and token types) into the ``(n, 2|3, seq)`` input."""
    parts = [ids, mask] + ([] if token_type_ids is None else [token_type_ids])
    return np.stack([np.asarray(p, np.int32) for p in parts], axis=1)


def bert(
    input_shape,
    *,
    rngs: nnx.Rngs,
    config: Mapping[str, Any] | str | os.PathLike,
    add_pooler: bool = True,
    dropout: float | None = 0.0,
) -> Bert:
    """Factory used by the model registry.

    Args:
      input_shape: shape of one example: ``(seq,)``, ``(2, seq)`` or ``(3, seq)``.
      rngs: NNX random streams.
      config: HF config dict or path (see :func:`read_config`).
      add_pooler: see :class:`Bert`.
      dropout: see :class:`Bert`.

    Raises:
      ValueError: for a bad ``input_shape`` or config.
    """
    shape = tuple(input_shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[0] in (2, 3))):
        raise ValueError(f"bert input_shape must be (seq,), (2, seq) or (3, seq); got {shape}.")
    model = Bert(config, add_pooler=add_pooler, dropout=dropout, rngs=rngs)
    if shape[-1] > model.config["max_position_embeddings"]:
        raise ValueError(
            f"Sequence length {shape[-1]} exceeds max_position_embeddings="
            f"{model.config['max_position_embeddings']}."
        )
    return model


def from_pretrained_dir(
    path: str | os.PathLike,
    *,
    add_pooler: bool | None = None,
    dropout: float | None = 0.0,
    rngs: nnx.Rngs | None = None,
) -> Bert:
    """Builds a :class:`Bert` from ``path/config.json`` and loads ``path/model.safetensors``.

    Args:
      path: a directory as saved by ``transformers`` (e.g. all-MiniLM-L6-v2's ``model/``).
      add_pooler: ``None`` builds the pooler when the checkpoint has one.
      dropout: see :class:`Bert`.
      rngs: random streams (only matter for dropout); default ``nnx.Rngs(0)``.

    Raises:
      FileNotFoundError: when ``config.json`` or ``model.safetensors`` is missing.
    """
    from tljax.models.weights import load_hf_bert, read_state_dict

    path = os.fspath(path)
    weights = os.path.join(path, "model.safetensors")
    for f in (os.path.join(path, "config.json"), weights):
        if not os.path.exists(f):
            raise FileNotFoundError(f"{f} not found; expected a HF model directory.")
    state = read_state_dict(weights)
    if add_pooler is None:
        add_pooler = any(k.removeprefix("bert.").startswith("pooler.") for k in state)
    model = Bert(path, add_pooler=add_pooler, dropout=dropout, rngs=rngs or nnx.Rngs(0))
    load_hf_bert(model, state)
    return model


__all__ = ["Bert", "bert", "from_pretrained_dir", "pack_inputs", "read_config"]

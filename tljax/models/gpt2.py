"""GPT-2 (Radford et al., 2019) in the layout of Hugging Face ``GPT2Model``.

The computation is that of ``transformers.GPT2Model``: token (``wte``) + absolute position
(``wpe``) embeddings, then ``n_layer`` pre-LN blocks (``x + c_proj(attention(ln_1(x)))``
with causal multi-head self-attention and a key padding mask; ``x + c_proj(gelu_new(
c_fc(ln_2(x))))``) and a final ``ln_f``. The dense layers are HF's ``Conv1D``: weights
stored ``(in, out)``, as our kernels, so they load without a transpose
(:func:`load_hf_gpt2`). With ``lm_head=True`` the output also holds the causal-LM logits
``ln_f(h) @ wte.T`` (``GPT2LMHeadModel``: the head is tied to ``wte``, it has no
parameters of its own).

Calling convention (as :mod:`tljax.models.bert`): ``x`` is an integer array, either
``(n, seq)`` token ids (every position is a token) or ``(n, 2, seq)`` ids and attention
mask (1 = token, 0 = pad), built by :func:`tljax.models.bert.pack_inputs` from
:meth:`tljax.data.text.TextTokenizer.encode_batch` (which right-pads). Position ids are
``cumsum(mask) - 1``: on right-padded input that is HF's default ``arange`` at every
token, and left-padded input gets the same positions as unpadded input (as HF's
``generate`` does).

Outputs: ``"features"`` the last token's hidden state (``pool="last"``, as
``GPT2ForSequenceClassification``: the last position whose mask is 1) or the mean over
the tokens (``pool="mean"``), ``"hidden_states"`` ``(n, seq, n_embd)`` after ``ln_f``,
and ``"lm_logits"`` ``(n, seq, vocab_size)`` when ``lm_head=True``.

Parameter paths mirror HF's keys: ``wte/embedding``, ``wpe/embedding``,
``h/<i>/{ln_1,attn/c_attn,attn/c_proj,ln_2,mlp/c_fc,mlp/c_proj}/{kernel,bias,scale}``,
``ln_f``.
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

from tljax.models.bert import pack_inputs
from tljax.models.resnet import host_normal_init

_INIT = host_normal_init(lambda shape: 0.02)  # HF's initializer_range
_ACTIVATIONS = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
}
_POOLS = ("last", "mean")
# GPT2Config's defaults: GPT-2 small (124M).
DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
}


def read_config(config: Mapping[str, Any] | str | os.PathLike | None = None) -> dict[str, Any]:
    """Validates a HF GPT-2 config (a dict, a ``config.json`` path or its directory).

    Args:
      config: the config; ``None`` is GPT-2 small. Missing keys take ``GPT2Config``'s
        defaults (:data:`DEFAULTS`).

    Returns:
      The config with defaults filled in and ``n_inner`` resolved (``4 * n_embd``).

    Raises:
      ValueError: for another ``model_type`` or an unsupported value.
    """
    if config is not None and not isinstance(config, Mapping):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    cfg = {**DEFAULTS, **(config or {})}
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"Expected a GPT-2 config, got model_type={cfg['model_type']!r}.")
    if cfg["activation_function"] not in _ACTIVATIONS:
        raise ValueError(
            f"Unsupported activation_function={cfg['activation_function']!r}; valid: "
            f"{sorted(_ACTIVATIONS)}."
        )
    if cfg["n_embd"] % cfg["n_head"]:
        raise ValueError(f"n_embd={cfg['n_embd']} is not divisible by n_head={cfg['n_head']}.")
    for key in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if cfg.get(key):
            raise ValueError(
                f"Unsupported {key}=True; only GPT-2's default (False) is implemented."
            )
    if cfg["n_inner"] is None:
        cfg["n_inner"] = 4 * cfg["n_embd"]
    return cfg


def _norm(dim: int, eps: float, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance, as PyTorch (see tljax.models.bert).
    return nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, use_fast_variance=False, rngs=rngs)


def _conv1d(i: int, o: int, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(i, o, dtype=dtype, kernel_init=_INIT, rngs=rngs)


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout | None:
    return nnx.Dropout(rate, rngs=rngs) if rate > 0 else None


def _drop(dropout: nnx.Dropout | None, x: jax.Array) -> jax.Array:
    return x if dropout is None else dropout(x)


class GPT2Attention(nnx.Module):
    """Causal multi-head self-attention with a key padding mask."""

    def __init__(self, cfg: dict[str, Any], rates: tuple[float, float], dtype, *, rngs):
        d = cfg["n_embd"]
        self.num_heads = cfg["n_head"]
        self.scale = cfg["scale_attn_weights"]
        self.c_attn = _conv1d(d, 3 * d, dtype, rngs)
        self.c_proj = _conv1d(d, d, dtype, rngs)
        self.attn_dropout = _dropout(rates[0], rngs)
        self.resid_dropout = _dropout(rates[1], rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        n, s, d = x.shape
        hd = d // self.num_heads
        q, k, v = (t.reshape(n, s, self.num_heads, hd) for t in jnp.split(self.c_attn(x), 3, -1))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
        if self.scale:
            scores = scores / math.sqrt(hd)
        causal = jnp.tril(jnp.ones((s, s), bool))
        allowed = causal[None, None] & mask[:, None, None, :]
        # HF fills masked scores with finfo.min: a query with no allowed key (a pad on the
        # left) attends uniformly instead of producing NaN.
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        probs = _drop(self.attn_dropout, jax.nn.softmax(scores, axis=-1).astype(v.dtype))
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(n, s, d)
        return _drop(self.resid_dropout, self.c_proj(ctx))


class GPT2MLP(nnx.Module):
    """``c_proj(act(c_fc(x)))``."""

    def __init__(self, cfg: dict[str, Any], rate: float, dtype, *, rngs: nnx.Rngs):
        self.c_fc = _conv1d(cfg["n_embd"], cfg["n_inner"], dtype, rngs)
        self.c_proj = _conv1d(cfg["n_inner"], cfg["n_embd"], dtype, rngs)
        self.act = _ACTIVATIONS[cfg["activation_function"]]
        self.dropout = _dropout(rate, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _drop(self.dropout, self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nnx.Module):
    """One pre-LN block."""

    def __init__(self, cfg: dict[str, Any], rates: tuple[float, float], dtype, *, rngs):
        d, eps = cfg["n_embd"], cfg["layer_norm_epsilon"]
        self.ln_1 = _norm(d, eps, dtype, rngs)
        self.attn = GPT2Attention(cfg, rates, dtype, rngs=rngs)
        self.ln_2 = _norm(d, eps, dtype, rngs)
        self.mlp = GPT2MLP(cfg, rates[1], dtype, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class GPT2(nnx.Module):
    """The GPT-2 decoder; see the module docstring for inputs, outputs and paths.

    Args:
      config: a HF GPT-2 config (dict, ``config.json`` path or its directory; ``None``:
        GPT-2 small).
      pool: ``"last"`` (last token) or ``"mean"`` (mean over tokens) features.
      lm_head: also return the tied causal-LM logits (``"lm_logits"``).
      dropout: ``None`` uses the config's ``embd_pdrop``/``attn_pdrop``/``resid_pdrop``
        in training mode (needs a ``dropout`` rng stream); a float sets all three;
        ``0.0`` (the default) builds no dropout.
      dtype: compute dtype (``None``: the parameters' dtype); LayerNorm statistics and the
        attention softmax are float32.
      rngs: NNX random streams.

    Raises:
      ValueError: for an unknown ``pool`` or a bad config.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | os.PathLike | None = None,
        *,
        pool: str = "last",
        lm_head: bool = False,
        dropout: float | None = 0.0,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        if pool not in _POOLS:
            raise ValueError(f"Unknown GPT-2 pool={pool!r}; valid: {list(_POOLS)}.")
        cfg = read_config(config)
        if dropout is None:
            embd, rates = cfg["embd_pdrop"], (cfg["attn_pdrop"], cfg["resid_pdrop"])
        else:
            embd, rates = float(dropout), (float(dropout), float(dropout))
        # Scalar items only: NNX graph definitions must be hashable.
        self.config_items = tuple(
            (k, v) for k, v in sorted(cfg.items()) if isinstance(v, (bool, int, float, str))
        )
        d = cfg["n_embd"]
        self.wte = nnx.Embed(cfg["vocab_size"], d, dtype=dtype, embedding_init=_INIT, rngs=rngs)
        self.wpe = nnx.Embed(cfg["n_positions"], d, dtype=dtype, embedding_init=_INIT, rngs=rngs)
        self.drop = _dropout(embd, rngs)
        self.h = nnx.List([GPT2Block(cfg, rates, dtype, rngs=rngs) for _ in range(cfg["n_layer"])])
        self.ln_f = _norm(d, cfg["layer_norm_epsilon"], dtype, rngs)
        self.pool = pool
        self.lm_head = lm_head
        self.feature_dim = d

    @property
    def config(self) -> dict[str, Any]:
        """The validated config (scalar entries only)."""
        return dict(self.config_items)

    def lm_logits(self, hidden_states: jax.Array) -> jax.Array:
        """Next-token logits ``hidden_states @ wte.T`` (the head tied to ``wte``)."""
        return self.wte.attend(hidden_states)

    def __call__(self, x: jax.Array, attention_mask: jax.Array | None = None):
        ids, mask = _unpack(x, attention_mask)
        max_len = self.config["n_positions"]
        if ids.shape[1] > max_len:
            raise ValueError(f"Sequence length {ids.shape[1]} exceeds n_positions={max_len}.")
        pos = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
        h = _drop(self.drop, self.wte(ids) + self.wpe(pos))
        for block in self.h:
            h = block(h, mask)
        h = self.ln_f(h)
        if self.pool == "last":
            last = jnp.argmax(jnp.where(mask, jnp.arange(ids.shape[1]), -1), axis=1)
            feats = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
        else:
            m = mask[..., None].astype(h.dtype)
            feats = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
        out = {"features": feats, "hidden_states": h}
        if self.lm_head:
            out["lm_logits"] = self.lm_logits(h)
        return out


def _unpack(x, attention_mask) -> tuple[jax.Array, jax.Array]:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(
            f"GPT-2 takes integer token ids, got dtype {x.dtype}; do not cast the inputs "
            "(e.g. to bfloat16: ids above 256 would be rounded)."
        )
    if x.ndim == 3 and x.shape[1] == 2:
        if attention_mask is not None:
            raise ValueError("Pass either a packed (n, 2, seq) array or a separate mask.")
        return x[:, 0], x[:, 1] != 0
    if x.ndim != 2:
        raise ValueError(f"GPT-2 input must have shape (n, seq) or (n, 2, seq); got {x.shape}.")
    mask = jnp.ones(x.shape, bool) if attention_mask is None else jnp.asarray(attention_mask) != 0
    return x, mask


def gpt2(
    input_shape,
    *,
    rngs: nnx.Rngs,
    config: Mapping[str, Any] | str | os.PathLike | None = None,
    pool: str = "last",
    lm_head: bool = False,
    dropout: float | None = 0.0,
    dtype: Any = None,
) -> GPT2:
    """Factory used by the model registry.

    Args:
      input_shape: shape of one example: ``(seq,)`` or ``(2, seq)``.
      rngs: NNX random streams.
      config: HF config dict or path (see :func:`read_config`); ``None``: GPT-2 small.
      pool, lm_head, dropout, dtype: see :class:`GPT2`.

    Raises:
      ValueError: for a bad ``input_shape`` or config.
    """
    shape = tuple(input_shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[0] == 2)):
        raise ValueError(f"gpt2 input_shape must be (seq,) or (2, seq); got {shape}.")
    if isinstance(dtype, str):
        dtype = jnp.dtype(dtype)
    model = GPT2(config, pool=pool, lm_head=lm_head, dropout=dropout, dtype=dtype, rngs=rngs)
    if shape[-1] > model.config["n_positions"]:
        raise ValueError(
            f"Sequence length {shape[-1]} exceeds n_positions={model.config['n_positions']}."
        )
    return model


_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # HF's causal-mask buffers


def load_hf_gpt2(model: GPT2, state_dict: Mapping[str, np.ndarray]) -> None:
    """Loads Hugging Face ``GPT2Model`` weights into a :class:`GPT2` (in place).

    Accepts ``GPT2Model`` keys (``wte.weight``, ``h.N.attn.c_attn.weight``…) or
    ``transformer.``-prefixed ones (``GPT2LMHeadModel``, ``GPT2ForSequenceClassification``;
    a ``lm_head.weight`` must equal ``wte.weight``, other keys outside the prefix — task
    heads — are dropped). ``Conv1D`` weights are ``(in, out)`` and load as they are; the
    causal-mask buffers (``h.N.attn.bias``, ``h.N.attn.masked_bias``) are ignored. Strict
    as :func:`tljax.models.weights.load_hf_bert`: nothing is written unless every key is
    used.

    Raises:
      ValueError: if keys are missing, unexpected or mis-shaped (all listed), or the
        checkpoint's ``lm_head.weight`` is not tied to ``wte.weight``.
    """
    from tljax.models.weights import _load, _same

    if not isinstance(model, GPT2):
        raise ValueError(
            f"load_hf_gpt2 needs the GPT2 module itself, got a {type(model).__name__}; for "
            "a Classifier pass classifier.backbone."
        )
    head = state_dict.get("lm_head.weight")
    if any(k.startswith("transformer.") for k in state_dict):
        state_dict = {k[12:]: v for k, v in state_dict.items() if k.startswith("transformer.")}
    else:
        state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    if head is not None and not (
        "wte.weight" in state_dict and np.array_equal(head, state_dict["wte.weight"])
    ):
        raise ValueError(
            "The checkpoint's lm_head.weight differs from wte.weight: GPT-2's LM head is tied "
            "to the token embeddings here; an untied head cannot be loaded."
        )
    # The [.] keeps c_attn.bias (a parameter) apart from attn.bias (the mask buffer).
    state_dict = {
        k: v
        for k, v in state_dict.items()
        if not (k.startswith("h.") and k.endswith(_BUFFER_SUFFIXES) and k.count(".") == 3)
    }

    def target(path: tuple):
        *mods, leaf = (str(p) for p in path)
        return ".".join(mods) + (".bias" if leaf == "bias" else ".weight"), _same

    _load(model, state_dict, target, "Hugging Face GPT-2")


def from_pretrained_dir(
    path: str | os.PathLike,
    *,
    pool: str = "last",
    lm_head: bool = False,
    dropout: float | None = 0.0,
    dtype: Any = None,
    rngs: nnx.Rngs | None = None,
) -> GPT2:
    """Builds a :class:`GPT2` from ``path/config.json`` and loads ``path/model.safetensors``.

    Raises:
      FileNotFoundError: when ``config.json`` or ``model.safetensors`` is missing.
    """
    from tljax.models.weights import read_state_dict

    path = os.fspath(path)
    weights = os.path.join(path, "model.safetensors")
    for f in (os.path.join(path, "config.json"), weights):
        if not os.path.exists(f):
            raise FileNotFoundError(f"{f} not found; expected a HF model directory.")
    model = GPT2(
        path, pool=pool, lm_head=lm_head, dropout=dropout, dtype=dtype, rngs=rngs or nnx.Rngs(0)
    )
    load_hf_gpt2(model, read_state_dict(weights))
    return model


__all__ = [
    "DEFAULTS",
    "GPT2",
    "from_pretrained_dir",
    "gpt2",
    "load_hf_gpt2",
    "pack_inputs",
    "read_config",
]

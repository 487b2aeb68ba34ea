"""Vision Transformer (Dosovitskiy et al., ICLR 2021) in the layout of HF ``ViTModel``.

The computation is that of ``transformers.ViTModel``: a ``patch×patch`` convolution with
stride ``patch`` cuts the image into patch embeddings, a learned class token is prepended,
learned absolute position embeddings are added, then ``num_hidden_layers`` pre-LN blocks
(``x + attention(LayerNorm(x))``; ``x + fc2(GELU(fc1(LayerNorm(x))))``, exact erf GELU)
and a final LayerNorm. Weights load from HF safetensors with :func:`load_hf_vit`.

Images are NHWC floats; height and width must be multiples of the patch size. Outputs:
``"features"`` the class token of the final LayerNorm's output (``pool="cls"``, as
``ViTForImageClassification``) or the mean of its patch tokens (``pool="mean"``, as timm's
``global_pool="avg"`` without its extra ``fc_norm``), ``"cls"``, ``"tokens"``
``(n, 1 + patches, hidden)`` and, with ``add_pooler=True``, ``"pooled"`` =
``tanh(dense(cls))`` (``ViTModel``'s pooler).

**Other image sizes.** The position embeddings cover the grid of ``input_shape``. Weights
trained at another size (224 for the published ViT-B/16 and ViT-S/16) are resampled on
loading by :func:`interpolate_pos_embed`: the class token's embedding is kept and the
patch grid is resized bicubically exactly as ``torch.nn.functional.interpolate(...,
mode="bicubic", align_corners=False)`` does in HF's ``interpolate_pos_encoding`` (cubic
convolution with ``a = -0.75``, half-pixel centres, border indices clamped, no
antialiasing). The call can do the same on the fly for an input of another size
(``interpolate_pos_encoding=True``).

Parameter paths (the block of layer ``i`` is ``layers/<i>``): ``embeddings/cls_token``,
``embeddings/position_embeddings``, ``embeddings/patch_embeddings/{kernel,bias}``,
``layers/<i>/{layernorm_before,attention/{query,key,value,out},layernorm_after,
intermediate,output}``, ``layernorm``, ``pooler``.

``dtype`` (e.g. ``jnp.bfloat16``) is the compute dtype of the convolution, the dense layers
and the residual stream; parameters stay float32, LayerNorm statistics and the attention
softmax are computed in float32.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.resnet import host_normal_init

_INIT = host_normal_init(lambda shape: 0.02)  # HF's initializer_range
_POOLS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Architecture of a ViT (names as in HF's ``ViTConfig``)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    patch_size: int = 16
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True


CONFIGS: dict[str, ViTConfig] = {
    # google/vit-base-patch16-224(-in21k)
    "vit_b16": ViTConfig(768, 12, 12, 3072),
    # ViT-S/16 (DeiT-S, facebook/dino-vits16): 384 wide, 6 heads
    "vit_s16": ViTConfig(384, 12, 6, 1536),
    # for tests and smoke runs
    "vit_tiny": ViTConfig(32, 2, 4, 64, patch_size=4),
}


def _keys_cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (``a = -0.75`` as PyTorch) at distances ``x``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The ``(out_size, in_size)`` float64 matrix of PyTorch's 1-D bicubic resize.

    ``interpolate(mode="bicubic", align_corners=False)``: output ``o`` samples the input at
    ``(o + 0.5) * in / out - 0.5`` from its four neighbours, indices clamped to the border.
    """
    scale = in_size / out_size
    src = (np.arange(out_size) + 0.5) * scale - 0.5
    base = np.floor(src)
    w = np.zeros((out_size, in_size))
    for k in range(-1, 3):
        idx = np.clip(base + k, 0, in_size - 1).astype(int)
        np.add.at(w, (np.arange(out_size), idx), _keys_cubic(src - (base + k)))
    return w


def interpolate_pos_embed(
    pos: jax.Array | np.ndarray,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
) -> jax.Array:
    """Resizes ``(1, 1 + gh*gw, d)`` position embeddings to another patch grid.

    The class token's row is kept; the patch rows, read as a ``(gh, gw)`` grid in row-major
    order, are resized bicubically (see the module docstring) to ``new_grid``.

    Args:
      pos: the embeddings, class token first.
      new_grid: ``(rows, cols)`` of patches to produce.
      old_grid: the grid ``pos`` covers; default: a square grid.

    Returns:
      ``(1, 1 + rows*cols, d)`` embeddings in ``pos``'s dtype (``pos`` itself when the grids
      are equal).

    Raises:
      ValueError: if ``pos`` is not ``(1, 1 + gh*gw, d)`` for ``old_grid`` (or a square).
    """
    pos = jnp.asarray(pos)
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(
            f"Position embeddings must have shape (1, 1 + patches, d); got {pos.shape}."
        )
    n = pos.shape[1] - 1
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(
                f"Position embeddings cover {n} patches, not a square grid; pass old_grid."
            )
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise ValueError(f"old_grid={tuple(old_grid)} does not hold the {n} patch embeddings.")
    if tuple(old_grid) == tuple(new_grid):
        return pos
    grid = pos[0, 1:].astype(jnp.float32).reshape(*old_grid, -1)
    wh = jnp.asarray(bicubic_matrix(old_grid[0], new_grid[0]), jnp.float32)
    ww = jnp.asarray(bicubic_matrix(old_grid[1], new_grid[1]), jnp.float32)
    grid = jnp.einsum("ih,jw,hwd->ijd", wh, ww, grid, precision=jax.lax.Precision.HIGHEST)
    patches = grid.reshape(1, new_grid[0] * new_grid[1], -1).astype(pos.dtype)
    return jnp.concatenate([pos[:, :1], patches], axis=1)


def _norm(dim: int, eps: float, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance, as PyTorch (see tljax.models.bert).
    return nnx.LayerNorm(dim, epsilon=eps, dtype=dtype, use_fast_variance=False, rngs=rngs)


def _dense(i: int, o: int, dtype, rngs: nnx.Rngs, use_bias: bool = True) -> nnx.Linear:
    return nnx.Linear(i, o, use_bias=use_bias, dtype=dtype, kernel_init=_INIT, rngs=rngs)


def _drop(dropout: nnx.Dropout | None, x: jax.Array) -> jax.Array:
    return x if dropout is None else dropout(x)


class ViTEmbeddings(nnx.Module):
    """Patch embeddings (convolution), class token and position embeddings."""

    def __init__(self, cfg: ViTConfig, grid: tuple[int, int], channels: int, dtype, *, rngs):
        d, p = cfg.hidden_size, cfg.patch_size
        self.patch_size = p
        self.grid = grid
        self.patch_embeddings = nnx.Conv(
            channels,
            d,
            kernel_size=(p, p),
            strides=(p, p),
            padding="VALID",
            dtype=dtype,
            kernel_init=_INIT,
            rngs=rngs,
        )
        self.cls_token = nnx.Param(_INIT(rngs.params(), (1, 1, d)))
        self.position_embeddings = nnx.Param(_INIT(rngs.params(), (1, 1 + grid[0] * grid[1], d)))
        self.dtype = dtype

    def __call__(self, x: jax.Array, interpolate: bool) -> jax.Array:
        n, h, w, _ = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"Image size {(h, w)} is not a multiple of the patch size {p}.")
        grid = (h // p, w // p)
        pos = self.position_embeddings[...]
        if grid != tuple(self.grid):
            if not interpolate:
                raise ValueError(
                    f"Image size {(h, w)} gives a {grid} patch grid but the position "
                    f"embeddings cover {tuple(self.grid)}; build the model for this size or "
                    "call with interpolate_pos_encoding=True."
                )
            pos = interpolate_pos_embed(pos, grid, tuple(self.grid))
        dtype = self.dtype or x.dtype
        tokens = self.patch_embeddings(x).reshape(n, grid[0] * grid[1], -1)
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, tokens.shape[-1]))
        tokens = jnp.concatenate([cls.astype(dtype), tokens.astype(dtype)], axis=1)
        return tokens + pos.astype(dtype)


class ViTAttention(nnx.Module):
    """Multi-head self-attention (no mask) and its output projection."""

    def __init__(self, cfg: ViTConfig, dropout: float, dtype, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.query = _dense(d, d, dtype, rngs, cfg.qkv_bias)
        self.key = _dense(d, d, dtype, rngs, cfg.qkv_bias)
        self.value = _dense(d, d, dtype, rngs, cfg.qkv_bias)
        self.out = _dense(d, d, dtype, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        n, s, d = x.shape
        hd = d // self.num_heads

        def heads(t):
            return t.reshape(n, s, self.num_heads, hd)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(hd)
        probs = _drop(self.dropout, jax.nn.softmax(scores, axis=-1).astype(v.dtype))
        return self.out(jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(n, s, d))


class ViTLayer(nnx.Module):
    """One pre-LN encoder block."""

    def __init__(self, cfg: ViTConfig, dropout: float, dtype, *, rngs: nnx.Rngs):
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.layernorm_before = _norm(d, eps, dtype, rngs)
        self.attention = ViTAttention(cfg, dropout, dtype, rngs=rngs)
        self.layernorm_after = _norm(d, eps, dtype, rngs)
        self.intermediate = _dense(d, cfg.intermediate_size, dtype, rngs)
        self.output = _dense(cfg.intermediate_size, d, dtype, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + _drop(self.dropout, self.attention(self.layernorm_before(x)))
        y = jax.nn.gelu(self.intermediate(self.layernorm_after(x)), approximate=False)
        return x + _drop(self.dropout, self.output(y))


class ViT(nnx.Module):
    """The ViT encoder; see the module docstring for inputs, outputs and parameter paths.

    Args:
      config: the architecture (e.g. ``CONFIGS["vit_b16"]``).
      image_size: ``(height, width)`` the position embeddings cover.
      channels: input channels.
      pool: ``"cls"`` (class token) or ``"mean"`` (mean of the patch tokens) features.
      add_pooler: build ``ViTModel``'s pooler (output ``"pooled"``).
      dropout: rate of the hidden and attention dropout; ``0.0`` builds none.
      dtype: compute dtype (``None``: the parameters' and inputs' dtype).
      rngs: NNX random streams.

    Raises:
      ValueError: for an unknown ``pool``, an image size that is not a multiple of the
        patch size, or a width not divisible by the number of heads.
    """

    def __init__(
        self,
        config: ViTConfig,
        image_size: tuple[int, int],
        *,
        channels: int = 3,
        pool: str = "cls",
        add_pooler: bool = False,
        dropout: float = 0.0,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        if pool not in _POOLS:
            raise ValueError(f"Unknown ViT pool={pool!r}; valid: {list(_POOLS)}.")
        h, w = image_size
        p = config.patch_size
        if h % p or w % p:
            raise ValueError(f"ViT image size {(h, w)} is not a multiple of the patch size {p}.")
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size={config.hidden_size} is not divisible by "
                f"num_attention_heads={config.num_attention_heads}."
            )
        self.config = config
        self.pool = pool
        d = config.hidden_size
        self.embeddings = ViTEmbeddings(config, (h // p, w // p), channels, dtype, rngs=rngs)
        self.embedding_dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.layers = nnx.List(
            [ViTLayer(config, dropout, dtype, rngs=rngs) for _ in range(config.num_hidden_layers)]
        )
        self.layernorm = _norm(d, config.layer_norm_eps, dtype, rngs)
        self.pooler = _dense(d, d, dtype, rngs) if add_pooler else None
        self.feature_dim = d

    def __call__(
        self, x: jax.Array, *, interpolate_pos_encoding: bool = False
    ) -> dict[str, jax.Array]:
        x = jnp.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"ViT takes NHWC images (n, h, w, c); got shape {x.shape}.")
        h = _drop(self.embedding_dropout, self.embeddings(x, interpolate_pos_encoding))
        for layer in self.layers:
            h = layer(h)
        h = self.layernorm(h)
        cls = h[:, 0]
        feats = cls if self.pool == "cls" else jnp.mean(h[:, 1:], axis=1)
        out = {"features": feats, "cls": cls, "tokens": h}
        if self.pooler is not None:
            out["pooled"] = jnp.tanh(self.pooler(cls))
        return out


def _factory(name: str):
    def build(
        input_shape,
        *,
        rngs: nnx.Rngs,
        pool: str = "cls",
        add_pooler: bool = False,
        dropout: float = 0.0,
        dtype: Any = None,
        layer_norm_eps: float | None = None,
    ) -> ViT:
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"{name} input_shape must be (height, width, channels); got {shape}.")
        cfg = CONFIGS[name]
        if layer_norm_eps is not None:  # timm's checkpoints use 1e-6
            cfg = dataclasses.replace(cfg, layer_norm_eps=float(layer_norm_eps))
        if isinstance(dtype, str):
            dtype = jnp.dtype(dtype)
        return ViT(
            cfg,
            shape[:2],
            channels=shape[2],
            pool=pool,
            add_pooler=add_pooler,
            dropout=dropout,
            dtype=dtype,
            rngs=rngs,
        )

    build.__name__ = name
    build.__doc__ = f"""Factory of the model registry: a ViT with ``CONFIGS[{name!r}]``.

    Args:
      input_shape: ``(height, width, channels)`` of one image.
      rngs: NNX random streams.
      pool, add_pooler, dropout, dtype: see :class:`ViT`.
      layer_norm_eps: overrides the config's (HF: 1e-12; timm: 1e-6).

    Raises:
      ValueError: for a bad ``input_shape`` or option.
    """
    return build


vit_b16 = _factory("vit_b16")
vit_s16 = _factory("vit_s16")
vit_tiny = _factory("vit_tiny")

_LAYER = {
    "layernorm_before": "layernorm_before",
    "attention/query": "attention.attention.query",
    "attention/key": "attention.attention.key",
    "attention/value": "attention.attention.value",
    "attention/out": "attention.output.dense",
    "layernorm_after": "layernorm_after",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}


# transformers >= 5 names ViTModel's blocks differently in memory (its loader renames the
# published checkpoints' keys); such state dicts are mapped back to the published names.
_RENAMED = (
    (re.compile(r"^layers\.(\d+)\."), r"encoder.layer.\1."),
    (re.compile(r"\.attention\.q_proj\."), ".attention.attention.query."),
    (re.compile(r"\.attention\.k_proj\."), ".attention.attention.key."),
    (re.compile(r"\.attention\.v_proj\."), ".attention.attention.value."),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.mlp\.fc1\."), ".intermediate.dense."),
    (re.compile(r"\.mlp\.fc2\."), ".output.dense."),
)


def _published_key(key: str) -> str:
    if not key.startswith("layers."):
        return key
    for pattern, repl in _RENAMED:
        key = pattern.sub(repl, key)
    return key


def load_hf_vit(model: ViT, state_dict: Mapping[str, np.ndarray]) -> None:
    """Loads Hugging Face ``ViTModel`` weights into a :class:`ViT` (in place).

    Accepts ``ViTModel`` keys as published (``embeddings.cls_token``,
    ``encoder.layer.N.attention.attention.query.weight``, ``layernorm.weight``…), as
    ``transformers`` >= 5 names them in memory (``layers.N.attention.q_proj.weight``,
    ``layers.N.mlp.fc1.weight``…; errors then name the published keys), or
    ``vit.``-prefixed (``ViTForImageClassification``; keys outside the prefix, i.e. the
    classifier, are dropped). The patch convolution goes OIHW → HWIO, dense weights
    are transposed; position embeddings for another grid are resized with
    :func:`interpolate_pos_embed`. A checkpoint's pooler is dropped when the model has
    none. Strict as :func:`tljax.models.weights.load_hf_bert`: nothing is written unless
    every key is used.

    Raises:
      ValueError: if keys are missing, unexpected or mis-shaped (all listed).
    """
    from tljax.models.weights import _load, _same

    if not isinstance(model, ViT):
        raise ValueError(
            f"load_hf_vit needs the ViT module itself, got a {type(model).__name__}; for a "
            "Classifier pass classifier.backbone."
        )
    if any(k.startswith("vit.") for k in state_dict):
        state_dict = {k[4:]: v for k, v in state_dict.items() if k.startswith("vit.")}
    state_dict = {_published_key(k): v for k, v in state_dict.items()}
    if model.pooler is None:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("pooler.")}
    grid = tuple(model.embeddings.grid)

    def resize(pos: np.ndarray) -> np.ndarray:
        n = pos.shape[1] - 1 if pos.ndim == 3 else -1
        if pos.ndim != 3 or pos.shape[0] != 1 or n == grid[0] * grid[1]:
            return pos  # the shape check reports anything else
        if math.isqrt(n) ** 2 != n:
            return pos
        return np.asarray(interpolate_pos_embed(pos.astype(np.float32), grid))

    def target(path: tuple):
        names = [str(p) for p in path]
        if names[0] == "embeddings" and len(names) == 2:  # cls_token, position_embeddings
            fn = resize if names[1] == "position_embeddings" else _same
            return f"embeddings.{names[1]}", fn
        *mods, leaf = names
        if mods[0] == "embeddings":  # the patch convolution
            name = "embeddings.patch_embeddings.projection"
            if leaf == "kernel":
                return f"{name}.weight", lambda w: np.transpose(w, (2, 3, 1, 0))
            return f"{name}.bias", _same
        if mods[0] == "layers":
            prefix = f"encoder.layer.{mods[1]}.{_LAYER['/'.join(mods[2:])]}"
        else:
            prefix = {"layernorm": "layernorm", "pooler": "pooler.dense"}[mods[0]]
        if leaf == "kernel":
            return f"{prefix}.weight", np.transpose
        return f"{prefix}.{'weight' if leaf == 'scale' else 'bias'}", _same

    _load(model, state_dict, target, "Hugging Face ViT")


__all__ = [
    "CONFIGS",
    "ViT",
    "ViTConfig",
    "bicubic_matrix",
    "interpolate_pos_embed",
    "load_hf_vit",
    "vit_b16",
    "vit_s16",
    "vit_tiny",
]

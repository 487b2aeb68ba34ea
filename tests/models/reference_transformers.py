"""Independent float64 NumPy references for the ViT and GPT-2 tests (no tljax code inside).

They read Hugging Face state dicts directly (``ViTModel`` / ``GPT2Model`` key names, the
PyTorch layouts: OIHW patch convolution, ``(out, in)`` linear weights, ``Conv1D``
weights ``(in, out)``), so the tests also check the key mapping and layout conversions.
The bicubic resize is written per output pixel from PyTorch's coefficient formulas, not as
the separable matrices the library uses.
"""

from __future__ import annotations

import math

import numpy as np


def vit_shapes(
    hidden: int, layers: int, mlp: int, patch: int, grid: int, channels: int = 3, pooler=False
) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``transformers.ViTModel(...).state_dict()``."""
    shapes = {
        "embeddings.cls_token": (1, 1, hidden),
        "embeddings.position_embeddings": (1, 1 + grid * grid, hidden),
        "embeddings.patch_embeddings.projection.weight": (hidden, channels, patch, patch),
        "embeddings.patch_embeddings.projection.bias": (hidden,),
        "layernorm.weight": (hidden,),
        "layernorm.bias": (hidden,),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (o, n_in) in {
            "attention.attention.query": (hidden, hidden),
            "attention.attention.key": (hidden, hidden),
            "attention.attention.value": (hidden, hidden),
            "attention.output.dense": (hidden, hidden),
            "intermediate.dense": (mlp, hidden),
            "output.dense": (hidden, mlp),
        }.items():
            shapes[p + name + ".weight"] = (o, n_in)
            shapes[p + name + ".bias"] = (o,)
        for ln in ("layernorm_before", "layernorm_after"):
            shapes[p + ln + ".weight"] = (hidden,)
            shapes[p + ln + ".bias"] = (hidden,)
    if pooler:
        shapes["pooler.dense.weight"] = (hidden, hidden)
        shapes["pooler.dense.bias"] = (hidden,)
    return shapes


def gpt2_shapes(vocab: int, positions: int, embd: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``transformers.GPT2Model(...).state_dict()`` (buffers excluded)."""
    shapes = {"wte.weight": (vocab, embd), "wpe.weight": (positions, embd)}
    for i in range(layers):
        p = f"h.{i}."
        for name, s in {
            "attn.c_attn": (embd, 3 * embd),
            "attn.c_proj": (embd, embd),
            "mlp.c_fc": (embd, 4 * embd),
            "mlp.c_proj": (4 * embd, embd),
        }.items():
            shapes[p + name + ".weight"] = s
            shapes[p + name + ".bias"] = (s[1],)
        for ln in ("ln_1", "ln_2"):
            shapes[p + ln + ".weight"] = (embd,)
            shapes[p + ln + ".bias"] = (embd,)
    shapes["ln_f.weight"] = (embd,)
    shapes["ln_f.bias"] = (embd,)
    return shapes


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """float32 values: LayerNorm scales around 1, everything else ``N(0, 0.2^2)``."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, s in shapes.items():
        is_ln_scale = k.endswith(".weight") and len(s) == 1
        v = rng.uniform(0.5, 1.5, s) if is_ln_scale else 0.2 * rng.standard_normal(s)
        out[k] = v.astype(np.float32)
    return out


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _softmax(a):
    a = np.exp(a - a.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True)


def _cubic_coeffs(t: float, a: float = -0.75) -> list[float]:
    """PyTorch's ``get_cubic_upsample_coefficients`` for neighbours ``-1, 0, 1, 2``."""

    def c1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def c2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)]


def bicubic_resize(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``F.interpolate(mode="bicubic", align_corners=False)`` of an ``(h, w, d)`` grid."""
    h, w, _ = grid.shape
    out = np.zeros((out_h, out_w, grid.shape[2]))
    for i in range(out_h):
        sy = (i + 0.5) * h / out_h - 0.5
        y0 = math.floor(sy)
        wy = _cubic_coeffs(sy - y0)
        for j in range(out_w):
            sx = (j + 0.5) * w / out_w - 0.5
            x0 = math.floor(sx)
            wx = _cubic_coeffs(sx - x0)
            for a in range(4):
                for b in range(4):
                    yy = min(max(y0 - 1 + a, 0), h - 1)
                    xx = min(max(x0 - 1 + b, 0), w - 1)
                    out[i, j] += wy[a] * wx[b] * grid[yy, xx]
    return out


def vit_forward(sd, x_nhwc, *, heads: int, patch: int, eps: float = 1e-12, interpolate=False):
    """HF ``ViTModel``'s last hidden state (after the final LayerNorm), float64."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    lin = lambda x, name: x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]
    ln = lambda x, name: _layer_norm(x, sd[f"{name}.weight"], sd[f"{name}.bias"], eps)
    gelu = np.vectorize(lambda t: 0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))))
    x = np.asarray(x_nhwc, np.float64)
    n, hh, ww, c = x.shape
    gh, gw = hh // patch, ww // patch
    # Non-overlapping patches, each flattened (c, ph, pw) like the OIHW kernel.
    p = x.reshape(n, gh, patch, gw, patch, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, gh * gw, -1)
    w = sd["embeddings.patch_embeddings.projection.weight"].reshape(sd["layernorm.weight"].size, -1)
    tokens = p @ w.T + sd["embeddings.patch_embeddings.projection.bias"]
    pos = sd["embeddings.position_embeddings"][0]
    if interpolate:
        side = int(round(math.sqrt(pos.shape[0] - 1)))
        grid = bicubic_resize(pos[1:].reshape(side, side, -1), gh, gw)
        pos = np.concatenate([pos[:1], grid.reshape(gh * gw, -1)])
    cls = np.broadcast_to(sd["embeddings.cls_token"], (n, 1, tokens.shape[-1]))
    h = np.concatenate([cls, tokens], axis=1) + pos[None]
    s, d = h.shape[1:]
    hd = d // heads
    i = 0
    while f"encoder.layer.{i}.output.dense.weight" in sd:
        pre = f"encoder.layer.{i}."
        y = ln(h, pre + "layernorm_before")
        q, k, v = (
            lin(y, pre + f"attention.attention.{t}").reshape(n, s, heads, hd).transpose(0, 2, 1, 3)
            for t in ("query", "key", "value")
        )
        a = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd))
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(n, s, d)
        h = h + lin(ctx, pre + "attention.output.dense")
        y = gelu(lin(ln(h, pre + "layernorm_after"), pre + "intermediate.dense"))
        h = h + lin(y, pre + "output.dense")
        i += 1
    return ln(h, "layernorm")


def gpt2_forward(sd, ids, mask, *, heads: int, eps: float = 1e-5):
    """HF ``GPT2Model``'s last hidden state (after ``ln_f``), float64.

    Position ids are HF's default ``arange(seq)``; ``mask`` (1 = token) hides keys.
    """
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    conv1d = lambda x, name: x @ sd[f"{name}.weight"] + sd[f"{name}.bias"]  # (in, out)
    ln = lambda x, name: _layer_norm(x, sd[f"{name}.weight"], sd[f"{name}.bias"], eps)

    def gelu_new(t):
        return 0.5 * t * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (t + 0.044715 * t**3)))

    n, s = ids.shape
    h = sd["wte.weight"][ids] + sd["wpe.weight"][np.arange(s)][None]
    d = h.shape[-1]
    hd = d // heads
    allowed = np.tril(np.ones((s, s), bool))[None, None] & (np.asarray(mask)[:, None, None] > 0)
    i = 0
    while f"h.{i}.ln_1.weight" in sd:
        pre = f"h.{i}."
        qkv = conv1d(ln(h, pre + "ln_1"), pre + "attn.c_attn")
        q, k, v = (
            qkv[..., j * d : (j + 1) * d].reshape(n, s, heads, hd).transpose(0, 2, 1, 3)
            for j in range(3)
        )
        a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        a = _softmax(np.where(allowed, a, np.finfo(np.float64).min))
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(n, s, d)
        h = h + conv1d(ctx, pre + "attn.c_proj")
        y = gelu_new(conv1d(ln(h, pre + "ln_2"), pre + "mlp.c_fc"))
        h = h + conv1d(y, pre + "mlp.c_proj")
        i += 1
    return ln(h, "ln_f")

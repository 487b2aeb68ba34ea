"""Independent reference implementations for the model tests (no tljax code inside).

They work directly on PyTorch-layout state dicts (NCHW activations, OIHW kernels,
``(out, in)`` linear weights), so the tests also check our layout conversions.
"""

from __future__ import annotations

import math

import numpy as np

ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def torchvision_resnet_shapes(
    arch: str, num_classes: int | None = 1000, in_ch: int = 3, stem: int = 7
) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``torchvision.models.<arch>().state_dict()``."""
    kind, depths = ARCHS[arch]
    exp = 1 if kind == "basic" else 4
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(name, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{s}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, in_ch, stem, stem)
    bn("bn1", 64)
    cin = 64
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
        for j in range(depth):
            p = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if kind == "basic":
                convs = [(planes, cin, 3), (planes, planes, 3)]
            else:
                convs = [(planes, cin, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            for k, (o, ci, ks) in enumerate(convs, 1):
                shapes[f"{p}.conv{k}.weight"] = (o, ci, ks, ks)
                bn(f"{p}.bn{k}", o)
            if stride != 1 or cin != planes * exp:
                shapes[f"{p}.downsample.0.weight"] = (planes * exp, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
            cin = planes * exp
    if num_classes:
        shapes["fc.weight"] = (num_classes, cin)
        shapes["fc.bias"] = (num_classes,)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random values of the right kind: He-scaled kernels, positive running variances."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = np.array(7, np.int64)
        elif k.endswith("running_var"):
            sd[k] = rng.uniform(0.5, 1.5, s).astype(np.float32)
        elif len(s) == 4:
            sd[k] = (rng.standard_normal(s) * math.sqrt(2.0 / np.prod(s[1:]))).astype(np.float32)
        elif k.endswith(".weight") and len(s) == 1:  # BatchNorm scale
            sd[k] = rng.uniform(0.5, 1.5, s).astype(np.float32)
        else:
            sd[k] = (0.1 * rng.standard_normal(s)).astype(np.float32)
    return sd


def _conv(x, w, stride, pad):
    """PyTorch Conv2d (NCHW, OIHW, symmetric zero padding, no bias) with NumPy."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # (n, c, ho, wo, kh, kw)
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True).astype(x.dtype)


def _bn(x, sd, name, eps=1e-5):
    c = (1, -1, 1, 1)
    inv = sd[f"{name}.weight"].reshape(c) / np.sqrt(sd[f"{name}.running_var"].reshape(c) + eps)
    return (x - sd[f"{name}.running_mean"].reshape(c)) * inv + sd[f"{name}.bias"].reshape(c)


def _maxpool(x):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.full((n, c, ho, wo), -np.inf, x.dtype)
    for di in range(3):
        for dj in range(3):
            out = np.maximum(out, xp[:, :, di : di + 2 * ho - 1 : 2, dj : dj + 2 * wo - 1 : 2])
    return out


def resnet_block(sd, p: str, x, kind: str, stride: int):
    """One torchvision block in eval mode on NCHW input."""
    relu = lambda t: np.maximum(t, 0)
    if kind == "basic":
        y = relu(_bn(_conv(x, sd[f"{p}.conv1.weight"], stride, 1), sd, f"{p}.bn1"))
        y = _bn(_conv(y, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
    else:
        y = relu(_bn(_conv(x, sd[f"{p}.conv1.weight"], 1, 0), sd, f"{p}.bn1"))
        y = relu(_bn(_conv(y, sd[f"{p}.conv2.weight"], stride, 1), sd, f"{p}.bn2"))
        y = _bn(_conv(y, sd[f"{p}.conv3.weight"], 1, 0), sd, f"{p}.bn3")
    if f"{p}.downsample.0.weight" in sd:
        x = _bn(_conv(x, sd[f"{p}.downsample.0.weight"], stride, 0), sd, f"{p}.downsample.1")
    return relu(y + x)


def resnet_forward(sd, x_nchw, arch: str, small_input: bool = False) -> dict[str, np.ndarray]:
    """torchvision's ResNet forward in eval mode; returns NCHW stage outputs + features."""
    kind, depths = ARCHS[arch]
    if small_input:
        x = _conv(x_nchw, sd["conv1.weight"], 1, 1)
    else:
        x = _conv(x_nchw, sd["conv1.weight"], 2, 3)
    x = np.maximum(_bn(x, sd, "bn1"), 0)
    if not small_input:
        x = _maxpool(x)
    out = {}
    for i, depth in enumerate(depths):
        for j in range(depth):
            x = resnet_block(sd, f"layer{i + 1}.{j}", x, kind, 2 if i > 0 and j == 0 else 1)
        out[f"layer{i + 1}"] = x
    out["features"] = x.mean(axis=(2, 3))
    if "fc.weight" in sd:
        out["logits"] = out["features"] @ sd["fc.weight"].T + sd["fc.bias"]
    return out


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def bert_forward(sd, cfg, ids, mask, token_types) -> np.ndarray:
    """HF BertModel's last hidden state in float64 NumPy, from HF key names."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    eps, nh = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    lin = lambda x, name: x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]
    ln = lambda x, name: _layer_norm(x, sd[f"{name}.weight"], sd[f"{name}.bias"], eps)
    gelu = np.vectorize(lambda t: 0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))))
    e = "embeddings."
    x = (
        sd[e + "word_embeddings.weight"][ids]
        + sd[e + "position_embeddings.weight"][np.arange(ids.shape[1])][None]
        + sd[e + "token_type_embeddings.weight"][token_types]
    )
    x = ln(x, e + "LayerNorm")
    n, s, h = x.shape
    d = h // nh
    bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float64).min)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (
            lin(x, p + f"attention.self.{t}").reshape(n, s, nh, d).transpose(0, 2, 1, 3)
            for t in ("query", "key", "value")
        )
        a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(n, s, h)
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        y = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = ln(x + y, p + "output.LayerNorm")
    return x

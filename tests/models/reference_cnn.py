"""Independent float64 NumPy references for VGG and Inception-v3 (no tljax code inside).

They work directly on PyTorch-layout state dicts (NCHW activations, OIHW kernels, ``(out,
in)`` linear weights) with the layer definitions of ``torchvision.models.vgg`` and
``torchvision.models.inception`` written out again here, so the tests also check our layout
conversions, key names and flatten order. Shapes are written by hand from the architecture
(as ``torchvision_resnet_shapes``); their parameter counts are checked against the counts
torchvision documents (:data:`TORCHVISION_PARAMS`).
"""

from __future__ import annotations

import math

import numpy as np

# torchvision's documented parameter counts (weights + biases, 1000-class heads; Inception
# with its auxiliary head).
TORCHVISION_PARAMS = {
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "inception_v3": 27_161_264,
}

VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"] + [512, 512, 512, "M"] * 2,
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"] + [512] * 4 + ["M"]
    + [512] * 4 + ["M"],
}  # fmt: skip


def _bn_shapes(shapes: dict, name: str, c: int) -> None:
    for s in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.{s}"] = (c,)
    shapes[f"{name}.num_batches_tracked"] = ()


def torchvision_vgg_shapes(
    arch: str, batch_norm: bool, num_classes: int | None = 1000, fc_dim: int = 4096, in_ch=3
) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``torchvision.models.<arch>[_bn]().state_dict()`` (``fc_dim``
    4096 there; ``num_classes=None``: without ``classifier.6``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    i, cin = 0, in_ch
    for v in VGG_CFGS[arch]:
        if v == "M":
            i += 1
            continue
        shapes[f"features.{i}.weight"] = (v, cin, 3, 3)
        shapes[f"features.{i}.bias"] = (v,)
        if batch_norm:
            _bn_shapes(shapes, f"features.{i + 1}", v)
        i += 3 if batch_norm else 2  # conv, [bn], relu
        cin = v
    shapes["classifier.0.weight"] = (fc_dim, cin * 49)
    shapes["classifier.0.bias"] = (fc_dim,)
    shapes["classifier.3.weight"] = (fc_dim, fc_dim)
    shapes["classifier.3.bias"] = (fc_dim,)
    if num_classes:
        shapes["classifier.6.weight"] = (num_classes, fc_dim)
        shapes["classifier.6.bias"] = (num_classes,)
    return shapes


# (name, out channels, kernel (h, w), stride, padding (h, w)) of Inception's BasicConv2d.
def _incep_a(c, pool):
    return [("branch1x1", 64, c, 1), ("branch5x5_1", 48, c, 1), ("branch5x5_2", 64, 48, 5),
            ("branch3x3dbl_1", 64, c, 1), ("branch3x3dbl_2", 96, 64, 3),
            ("branch3x3dbl_3", 96, 96, 3), ("branch_pool", pool, c, 1)]  # fmt: skip


def _incep_c(c, c7):
    return [("branch1x1", 192, c, 1), ("branch7x7_1", c7, c, 1), ("branch7x7_2", c7, c7, (1, 7)),
            ("branch7x7_3", 192, c7, (7, 1)), ("branch7x7dbl_1", c7, c, 1),
            ("branch7x7dbl_2", c7, c7, (7, 1)), ("branch7x7dbl_3", c7, c7, (1, 7)),
            ("branch7x7dbl_4", c7, c7, (7, 1)), ("branch7x7dbl_5", 192, c7, (1, 7)),
            ("branch_pool", 192, c, 1)]  # fmt: skip


def _incep_e(c):
    return [("branch1x1", 320, c, 1), ("branch3x3_1", 384, c, 1),
            ("branch3x3_2a", 384, 384, (1, 3)), ("branch3x3_2b", 384, 384, (3, 1)),
            ("branch3x3dbl_1", 448, c, 1), ("branch3x3dbl_2", 384, 448, 3),
            ("branch3x3dbl_3a", 384, 384, (1, 3)), ("branch3x3dbl_3b", 384, 384, (3, 1)),
            ("branch_pool", 192, c, 1)]  # fmt: skip


INCEPTION_BLOCKS = {
    "Conv2d_1a_3x3": [("", 32, 3, 3)],
    "Conv2d_2a_3x3": [("", 32, 32, 3)],
    "Conv2d_2b_3x3": [("", 64, 32, 3)],
    "Conv2d_3b_1x1": [("", 80, 64, 1)],
    "Conv2d_4a_3x3": [("", 192, 80, 3)],
    "Mixed_5b": _incep_a(192, 32),
    "Mixed_5c": _incep_a(256, 64),
    "Mixed_5d": _incep_a(288, 64),
    "Mixed_6a": [("branch3x3", 384, 288, 3), ("branch3x3dbl_1", 64, 288, 1),
                 ("branch3x3dbl_2", 96, 64, 3), ("branch3x3dbl_3", 96, 96, 3)],
    "Mixed_6b": _incep_c(768, 128),
    "Mixed_6c": _incep_c(768, 160),
    "Mixed_6d": _incep_c(768, 160),
    "Mixed_6e": _incep_c(768, 192),
    "Mixed_7a": [("branch3x3_1", 192, 768, 1), ("branch3x3_2", 320, 192, 3),
                 ("branch7x7x3_1", 192, 768, 1), ("branch7x7x3_2", 192, 192, (1, 7)),
                 ("branch7x7x3_3", 192, 192, (7, 1)), ("branch7x7x3_4", 192, 192, 3)],
    "Mixed_7b": _incep_e(1280),
    "Mixed_7c": _incep_e(2048),
}  # fmt: skip
AUX_CONVS = [("conv0", 128, 768, 1), ("conv1", 768, 128, 5)]


def _basic_conv_shapes(shapes, name, out, cin, k):
    kh, kw = (k, k) if isinstance(k, int) else k
    shapes[f"{name}.conv.weight"] = (out, cin, kh, kw)
    _bn_shapes(shapes, f"{name}.bn", out)


def torchvision_inception_shapes(
    num_classes: int | None = 1000, aux_logits: bool = True, aux_classes: int | None = None
) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``torchvision.models.inception_v3(aux_logits=...).state_dict()``
    (``num_classes=None``: without ``fc``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for block, convs in INCEPTION_BLOCKS.items():
        for name, out, cin, k in convs:
            _basic_conv_shapes(shapes, f"{block}.{name}" if name else block, out, cin, k)
    if aux_logits:
        for name, out, cin, k in AUX_CONVS:
            _basic_conv_shapes(shapes, f"AuxLogits.{name}", out, cin, k)
        aux_classes = aux_classes or num_classes
        shapes["AuxLogits.fc.weight"] = (aux_classes, 768)
        shapes["AuxLogits.fc.bias"] = (aux_classes,)
    if num_classes:
        shapes["fc.weight"] = (num_classes, 2048)
        shapes["fc.bias"] = (num_classes,)
    return shapes


def n_params(shapes: dict[str, tuple[int, ...]]) -> int:
    """Parameters (not BatchNorm statistics) in a shape listing."""
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(stats))


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 values of the right kind: He-scaled conv and linear weights, BatchNorm
    scales and running variances in [0.5, 1.5], small biases and running means."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = np.array(7, np.int64)
        elif k.endswith("running_var") or (k.endswith(".weight") and len(s) == 1):
            sd[k] = rng.uniform(0.5, 1.5, s).astype(np.float32)
        elif len(s) in (2, 4):
            sd[k] = (rng.standard_normal(s) * math.sqrt(2.0 / math.prod(s[1:]))).astype(np.float32)
        else:
            sd[k] = (0.1 * rng.standard_normal(s)).astype(np.float32)
    return sd


def conv2d(x, w, b=None, stride=1, pad=(0, 0)):
    """PyTorch Conv2d (NCHW, OIHW, symmetric zero padding ``pad`` = (rows, cols))."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # (n, c, ho, wo, kh, kw)
    y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def batch_norm(x, sd, name, eps):
    """Eval-mode BatchNorm2d from the state dict's running statistics."""
    c = (1, -1, 1, 1)
    inv = sd[f"{name}.weight"].reshape(c) / np.sqrt(sd[f"{name}.running_var"].reshape(c) + eps)
    return (x - sd[f"{name}.running_mean"].reshape(c)) * inv + sd[f"{name}.bias"].reshape(c)


def max_pool(x, k, s):
    """MaxPool2d(k, s), no padding, floor mode."""
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return win.max(axis=(4, 5))


def avg_pool(x, k, s, p=0):
    """AvgPool2d(k, s, p) with zero padding counted (``count_include_pad=True``)."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return win.sum(axis=(4, 5)) / (k * k)


def adaptive_avg_pool(x, size):
    """AdaptiveAvgPool2d((size, size)) with PyTorch's window bounds, as a loop."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, size, size), x.dtype)
    for i in range(size):
        h0, h1 = math.floor(i * h / size), math.ceil((i + 1) * h / size)
        for j in range(size):
            w0, w1 = math.floor(j * w / size), math.ceil((j + 1) * w / size)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def _f64(sd):
    return {k: np.asarray(v, np.float64) for k, v in sd.items()}


def vgg_forward(sd, x_nchw, arch: str, batch_norm_: bool) -> dict[str, np.ndarray]:
    """torchvision's VGG forward in eval mode (no dropout). Returns the NCHW max-pool
    outputs ``pool1``..``pool5``, ``features`` (``classifier[:6]``, or the global average
    pool when the state dict has no ``classifier.0``) and ``logits`` (``classifier.6``)."""
    sd = _f64(sd)
    x = np.asarray(x_nchw, np.float64)
    out, i, stage = {}, 0, 0
    for v in VGG_CFGS[arch]:
        if v == "M":
            x = max_pool(x, 2, 2)
            stage += 1
            out[f"pool{stage}"] = x
            i += 1
            continue
        x = conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], 1, (1, 1))
        if batch_norm_:
            x = batch_norm(x, sd, f"features.{i + 1}", 1e-5)
        x = np.maximum(x, 0)
        i += 3 if batch_norm_ else 2
    if "classifier.0.weight" not in sd:
        out["features"] = x.mean(axis=(2, 3))
        return out
    x = adaptive_avg_pool(x, 7).reshape(x.shape[0], -1)
    for j in (0, 3):
        x = np.maximum(x @ sd[f"classifier.{j}.weight"].T + sd[f"classifier.{j}.bias"], 0)
    out["features"] = x
    if "classifier.6.weight" in sd:
        out["logits"] = x @ sd["classifier.6.weight"].T + sd["classifier.6.bias"]
    return out


def _basic(sd, name, x, stride=1, pad=(0, 0)):
    """Inception's BasicConv2d: conv (no bias) → BatchNorm (eps 0.001) → ReLU."""
    y = conv2d(x, sd[f"{name}.conv.weight"], None, stride, pad)
    return np.maximum(batch_norm(y, sd, f"{name}.bn", 1e-3), 0)


def _mixed(sd, kind, p, x):
    """One torchvision Inception block (``kind`` in A..E) in eval mode."""
    b = lambda name, t, s=1, pad=(0, 0): _basic(sd, f"{p}.{name}", t, s, pad)
    cat = lambda *t: np.concatenate(t, axis=1)
    if kind == "A":
        return cat(
            b("branch1x1", x),
            b("branch5x5_2", b("branch5x5_1", x), pad=(2, 2)),
            b("branch3x3dbl_3", b("branch3x3dbl_2", b("branch3x3dbl_1", x), pad=(1, 1)),
              pad=(1, 1)),
            b("branch_pool", avg_pool(x, 3, 1, 1)),
        )  # fmt: skip
    if kind == "B":
        d = b("branch3x3dbl_2", b("branch3x3dbl_1", x), pad=(1, 1))
        return cat(b("branch3x3", x, 2), b("branch3x3dbl_3", d, 2), max_pool(x, 3, 2))
    if kind == "C":
        s = b("branch7x7_3", b("branch7x7_2", b("branch7x7_1", x), pad=(0, 3)), pad=(3, 0))
        d = b("branch7x7dbl_1", x)
        for j, pad in ((2, (3, 0)), (3, (0, 3)), (4, (3, 0)), (5, (0, 3))):
            d = b(f"branch7x7dbl_{j}", d, pad=pad)
        return cat(b("branch1x1", x), s, d, b("branch_pool", avg_pool(x, 3, 1, 1)))
    if kind == "D":
        t = b("branch3x3_2", b("branch3x3_1", x), 2)
        s = b("branch7x7x3_3", b("branch7x7x3_2", b("branch7x7x3_1", x), pad=(0, 3)), pad=(3, 0))
        return cat(t, b("branch7x7x3_4", s, 2), max_pool(x, 3, 2))
    t = b("branch3x3_1", x)
    t = cat(b("branch3x3_2a", t, pad=(0, 1)), b("branch3x3_2b", t, pad=(1, 0)))
    d = b("branch3x3dbl_2", b("branch3x3dbl_1", x), pad=(1, 1))
    d = cat(b("branch3x3dbl_3a", d, pad=(0, 1)), b("branch3x3dbl_3b", d, pad=(1, 0)))
    return cat(b("branch1x1", x), t, d, b("branch_pool", avg_pool(x, 3, 1, 1)))


def inception_aux(sd, x_nchw) -> np.ndarray:
    """torchvision's InceptionAux (``AuxLogits.*``) on the NCHW output of Mixed_6e."""
    sd = _f64(sd)
    x = avg_pool(np.asarray(x_nchw, np.float64), 5, 3)
    x = _basic(sd, "AuxLogits.conv1", _basic(sd, "AuxLogits.conv0", x))
    x = x.mean(axis=(2, 3))
    return x @ sd["AuxLogits.fc.weight"].T + sd["AuxLogits.fc.bias"]


def inception_forward(sd, x_nchw, transform_input: bool = False) -> dict[str, np.ndarray]:
    """torchvision's Inception3 forward in eval mode. Returns the NCHW outputs of
    ``Mixed_5d``, ``Mixed_6e``, ``Mixed_7c``, the pooled ``features`` and ``logits`` (when
    the state dict has ``fc``)."""
    sd = _f64(sd)
    x = np.asarray(x_nchw, np.float64)
    if transform_input:
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        x = x * (std / 0.5).reshape(1, 3, 1, 1) + ((mean - 0.5) / 0.5).reshape(1, 3, 1, 1)
    x = _basic(sd, "Conv2d_1a_3x3", x, 2)
    x = _basic(sd, "Conv2d_2a_3x3", x)
    x = max_pool(_basic(sd, "Conv2d_2b_3x3", x, pad=(1, 1)), 3, 2)
    x = _basic(sd, "Conv2d_4a_3x3", _basic(sd, "Conv2d_3b_1x1", x))
    x = max_pool(x, 3, 2)
    out = {}
    for name, kind in (("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"),
                       ("Mixed_6a", "B"), ("Mixed_6b", "C"), ("Mixed_6c", "C"),
                       ("Mixed_6d", "C"), ("Mixed_6e", "C"), ("Mixed_7a", "D"),
                       ("Mixed_7b", "E"), ("Mixed_7c", "E")):  # fmt: skip
        x = _mixed(sd, kind, name, x)
        out[name] = x
    out["features"] = x.mean(axis=(2, 3))
    if "fc.weight" in sd:
        out["logits"] = out["features"] @ sd["fc.weight"].T + sd["fc.bias"]
    return out

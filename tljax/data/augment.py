r"""Image augmentation as pure, jit-able JAX functions, run on the device inside the step.

Every transform takes a batch ``x`` of shape ``(n, h, w, c)`` and a PRNG key, draws the
parameters of every image with one random call (each random call costs compile time on
XLA:CPU), and returns a batch of the same shape and dtype. The host does nothing per
image, and since the key is ``fold_in(rng, step)`` (see
:func:`tljax.train.with_augmentation`) a resumed run draws exactly the same views.

Photometric transforms work on pixel values in ``[0, 1]`` (``value_range`` maps other
ranges there and back). The transforms:

- :func:`random_resized_crop`: torchvision's ``RandomResizedCrop`` (area fraction
  ``U(scale)``, log-uniform aspect ratio, 10 attempts then a centre crop), resized back
  to ``h × w`` (bilinear; the same as ``jax.image.scale_and_translate``);
- :func:`random_flip`: horizontal flip with probability ``p``;
- :func:`normalize`: ``(x − mean) / std`` per channel;
- :func:`rand_augment`: RandAugment (Cubuk et al., 2020) as in torchvision / FixMatch:
  per image ``num_ops`` operations drawn uniformly from :data:`OPS`, each with magnitude
  ``magnitude`` of ``num_magnitude_bins − 1`` (FixMatch: uniform in ``[0, magnitude]``),
  a random sign for signed ones, then an optional cutout square (FixMatch's strong view).

:func:`make` composes named stages from a config string such as ``"crop+flip"``.
Normalisation of the data is ``data.standardize`` (host side, every split, so evaluation
sees it too); given its ``mean``/``std``, :func:`make` runs the stages on the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Transform = Callable[[jax.Array, jax.Array], jax.Array]

# RandAugment's operations (torchvision's list; FixMatch's adds Cutout, applied after).
OPS = (
    "identity",
    "auto_contrast",
    "equalize",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def _check_images(x: jax.Array, name: str) -> None:
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{name} expects float NHWC images, got shape {tuple(x.shape)} and dtype "
            f"{x.dtype}; augmentation applies to image tasks only (data.augment='none' "
            "for others)."
        )


# --- crop and flip -------------------------------------------------------------------


def crop_boxes(
    key: jax.Array,
    n: int,
    height: int,
    width: int,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> jax.Array:
    """``(n, 4)`` int32 boxes ``(top, left, h, w)`` as torchvision's
    ``RandomResizedCrop.get_params``: the first of ``attempts`` draws (area ``U(scale)``
    of the image, aspect ratio ``w/h`` log-uniform in ``ratio``) that fits the image,
    else the largest centred crop with the ratio clipped to ``ratio``."""
    u = jax.random.uniform(key, (n, attempts * 4)).reshape(n, attempts, 4)  # 2-D: faster compile
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(lo + (hi - lo) * u[..., 1])
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    top = jnp.floor(u[..., 2] * (height - h + 1)).astype(jnp.int32)
    left = jnp.floor(u[..., 3] * (width - w + 1)).astype(jnp.int32)
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(ok, axis=1)
    pick = lambda a: jnp.take_along_axis(a, first[:, None], axis=1)[:, 0]
    boxes = jnp.stack([pick(top), pick(left), pick(h), pick(w)], axis=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    fallback = jnp.array([(height - fh) // 2, (width - fw) // 2, fh, fw], jnp.int32)
    return jnp.where(ok.any(axis=1)[:, None], boxes, fallback)


def _resample_matrix(start: jax.Array, length: jax.Array, size: int) -> jax.Array:
    """``(size, size)`` bilinear weights that resample ``[start, start + length)`` of an
    axis of ``size`` pixels onto ``size`` pixels at pixel centres (rows sum to 1)."""
    src = start + (jnp.arange(size) + 0.5) * (length / size) - 0.5
    src = jnp.clip(src, 0.0, size - 1.0)
    return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - jnp.arange(size)[None, :]))


def resized_crop(x: jax.Array, boxes: jax.Array) -> jax.Array:
    """Crops image ``i`` of ``x`` to ``boxes[i] = (top, left, h, w)`` and resizes it back to
    the full ``h × w`` (bilinear at pixel centres, edge pixels repeated).

    A box never exceeds the image, so this only upsamples, where antialiasing has no
    effect: the result equals ``jax.image.scale_and_translate(..., "linear")``, computed
    as two small matrix products per image (cheap to compile and to run on CPU).
    """
    _, height, width, _ = x.shape
    b = boxes.astype(jnp.float32)
    rows = jax.vmap(_resample_matrix, (0, 0, None))(b[:, 0], b[:, 2], height)
    cols = jax.vmap(_resample_matrix, (0, 0, None))(b[:, 1], b[:, 3], width)
    out = jnp.einsum("nij,njkc,nlk->nilc", rows, x.astype(jnp.float32), cols)
    return out.astype(x.dtype)


def random_resized_crop(
    x: jax.Array,
    key: jax.Array,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """torchvision's ``RandomResizedCrop`` to the input size; see :func:`crop_boxes`."""
    _check_images(x, "random_resized_crop")
    if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
        raise ValueError(
            f"random_resized_crop: need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= "
            f"ratio[1]; got scale={tuple(scale)}, ratio={tuple(ratio)}."
        )
    n, h, w, _ = x.shape
    return resized_crop(x, crop_boxes(key, n, h, w, scale=scale, ratio=ratio))


def random_flip(x: jax.Array, key: jax.Array, *, p: float = 0.5) -> jax.Array:
    """Mirrors each image left-right with probability ``p``."""
    _check_images(x, "random_flip")
    flip = (jax.random.uniform(key, (x.shape[0],)) < p)[:, None, None, None]
    return jnp.where(flip, x[:, :, ::-1], x)


def normalize(x: jax.Array, mean, std) -> jax.Array:
    """``(x − mean) / std`` with per-channel (or scalar) ``mean`` and ``std``."""
    return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def denormalize(x: jax.Array, mean, std) -> jax.Array:
    """The inverse of :func:`normalize`."""
    return x * jnp.asarray(std, x.dtype) + jnp.asarray(mean, x.dtype)


# --- RandAugment operations on one image (h, w, c) in [0, 1] ---------------------------


def _gray(img):
    if img.shape[-1] == 3:
        return img @ jnp.array([0.2989, 0.587, 0.114], img.dtype)
    return img.mean(-1)


def _blend(a, b, f):  # torchvision's _blend: f·a + (1 − f)·b, clipped
    return jnp.clip(f * a + (1.0 - f) * b, 0.0, 1.0)


def auto_contrast(img: jax.Array) -> jax.Array:
    """Stretches each channel to ``[0, 1]`` (channels with one value are unchanged)."""
    lo, hi = img.min(axis=(0, 1)), img.max(axis=(0, 1))
    span = jnp.where(hi > lo, hi - lo, 1.0)
    return jnp.where(hi > lo, (img - lo) / span, img)


def equalize(img: jax.Array) -> jax.Array:
    """Histogram equalisation of each channel on 256 levels (PIL's / torchvision's rule)."""
    q = jnp.round(jnp.clip(img, 0.0, 1.0) * 255.0).astype(jnp.int32)

    def channel(v):  # v: (h*w,) levels
        hist = jnp.zeros(256, jnp.int32).at[v].add(1)
        cdf = jnp.cumsum(hist)
        step = (v.size - hist[v.max()]) // 255  # PIL: the last non-empty bin is left out
        lut = (cdf - hist + step // 2) // jnp.maximum(step, 1)
        return jnp.where(step > 0, jnp.clip(lut, 0, 255)[v], v)

    flat = q.reshape(-1, q.shape[-1])
    out = jax.vmap(channel, in_axes=1, out_axes=1)(flat)
    return (out.astype(img.dtype) / 255.0).reshape(img.shape)


def brightness(img, f):
    return _blend(img, jnp.zeros_like(img), f)


def color(img, f):
    return _blend(img, _gray(img)[..., None], f)


def contrast(img, f):
    return _blend(img, jnp.mean(_gray(img)), f)


def sharpness(img, f):
    """Blends with a 3×3 smoothing (``[[1,1,1],[1,5,1],[1,1,1]]/13``; border kept)."""
    k = jnp.array([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], img.dtype) / 13.0
    h, w, _ = img.shape
    pad = jnp.pad(img, ((1, 1), (1, 1), (0, 0)))
    smooth = sum(k[i, j] * pad[i : i + h, j : j + w] for i in range(3) for j in range(3))
    rows, cols = jnp.arange(h)[:, None, None], jnp.arange(w)[None, :, None]
    border = (rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1)
    return _blend(img, jnp.where(border, img, smooth), f)


def posterize(img, bits):
    """Keeps the top ``bits`` of the 8-bit level."""
    q = jnp.floor(jnp.clip(img, 0.0, 1.0) * 255.0 + 0.5)
    step = 2.0 ** (8 - bits)
    return (jnp.floor(q / step) * step / 255.0).astype(img.dtype)


def solarize(img, threshold):
    """Inverts values ``>= threshold``."""
    return jnp.where(img >= threshold, 1.0 - img, img)


def affine(img: jax.Array, matrix: jax.Array, fill: float) -> jax.Array:
    """Resamples ``img`` at ``matrix @ (row, col, 1)`` about the image centre (bilinear;
    ``fill`` outside)."""
    h, w, c = img.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows, cols = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
    src = jnp.einsum("ij,jhw->ihw", matrix, jnp.stack([rows, cols, jnp.ones_like(rows)]))
    r, q = src[0] + cy, src[1] + cx
    r0, q0 = jnp.floor(r), jnp.floor(q)
    flat = img.reshape(h * w, c)
    out = jnp.zeros_like(img)
    # Bilinear: the four neighbours, each with its weight, or ``fill`` outside the image.
    for dr in (0, 1):
        for dq in (0, 1):
            rr, qq = r0 + dr, q0 + dq
            wt = (1 - jnp.abs(r - rr)) * (1 - jnp.abs(q - qq))
            inside = (rr >= 0) & (rr <= h - 1) & (qq >= 0) & (qq <= w - 1)
            idx = (jnp.clip(rr, 0, h - 1) * w + jnp.clip(qq, 0, w - 1)).astype(jnp.int32)
            val = jnp.where(inside[..., None], flat[idx], jnp.asarray(fill, img.dtype))
            out = out + wt[..., None] * val
    return out


def _affine_matrix(op: jax.Array, mag: jax.Array, shape) -> jax.Array:
    """The ``(2, 3)`` map from output to source ``(row, col, 1)`` of geometric op ``op``
    (an index into :data:`_GEOMETRIC`) at signed magnitude ``mag``."""
    h, w = shape
    one, zero = jnp.ones_like(mag), jnp.zeros_like(mag)
    cos, sin = jnp.cos(jnp.deg2rad(mag)), jnp.sin(jnp.deg2rad(mag))
    mats = jnp.stack(
        [
            jnp.stack([cos, -sin, zero, sin, cos, zero]),  # rotate
            jnp.stack([one, zero, zero, mag, one, zero]),  # shear_x: col += mag·row
            jnp.stack([one, mag, zero, zero, one, zero]),  # shear_y: row += mag·col
            jnp.stack([one, zero, zero, zero, one, mag * w]),  # translate_x
            jnp.stack([one, zero, mag * h, zero, one, zero]),  # translate_y
        ]
    )
    return mats[op].reshape(2, 3)


# Magnitude of each signed op at the top bin (torchvision's RandAugment space; rotation in
# degrees, translation as a fraction of the size, the others as factor 1 ± value).
_MAXIMA = {
    "brightness": 0.9,
    "color": 0.9,
    "contrast": 0.9,
    "sharpness": 0.9,
    "rotate": 30.0,
    "shear_x": 0.3,
    "shear_y": 0.3,
    "translate_x": 150.0 / 331.0,
    "translate_y": 150.0 / 331.0,
}
_FACTOR_OPS = {
    "brightness": brightness,
    "color": color,
    "contrast": contrast,
    "sharpness": sharpness,
}


def _photometric(name: str):
    """``fn(img, level, sign)`` of a non-geometric op."""
    if name in _FACTOR_OPS:
        fn, top = _FACTOR_OPS[name], _MAXIMA[name]
        return lambda x, lv, s: fn(x, 1.0 + s * lv * top)
    return {
        "posterize": lambda x, lv, s: posterize(x, 8.0 - jnp.round(4.0 * lv)),
        "solarize": lambda x, lv, s: solarize(x, 1.0 - lv),
        "auto_contrast": lambda x, lv, s: auto_contrast(x),
        "equalize": lambda x, lv, s: equalize(x),
        "identity": lambda x, lv, s: x,
    }[name]


def _apply_op(img, op_id, level, sign, ops, fill):
    """Applies ``ops[op_id]`` at ``level`` (a fraction of its top magnitude) and ``sign``.
    Under ``vmap`` every branch runs and the result is selected; the geometric ops share
    one resampling."""
    photometric = [n for n in ops if n not in _GEOMETRIC]
    out = img
    if photometric:
        pos = jnp.asarray([photometric.index(n) if n in photometric else 0 for n in ops])
        branches = [_photometric(n) for n in photometric]
        out = jax.lax.switch(pos[op_id], branches, img, level, sign)
    if any(n in _GEOMETRIC for n in ops):
        gpos = jnp.asarray([_GEOMETRIC.index(n) if n in _GEOMETRIC else 0 for n in ops])
        gmax = jnp.asarray([_MAXIMA.get(n, 0.0) for n in ops], img.dtype)
        matrix = _affine_matrix(gpos[op_id], sign * level * gmax[op_id], img.shape[:2])
        is_geo = jnp.asarray([n in _GEOMETRIC for n in ops])[op_id]
        out = jnp.where(is_geo, affine(img, matrix, fill), out)
    return out.astype(img.dtype)


def _cutout(img, u, size, fill):
    h, w, _ = img.shape
    side = u[0] * size * jnp.array([h, w])
    cy, cx = u[1] * h, u[2] * w
    rows, cols = jnp.arange(h)[:, None, None] + 0.5, jnp.arange(w)[None, :, None] + 0.5
    box = (jnp.abs(rows - cy) < side[0] / 2) & (jnp.abs(cols - cx) < side[1] / 2)
    return jnp.where(box, jnp.asarray(fill, img.dtype), img)


def rand_augment(
    x: jax.Array,
    key: jax.Array,
    *,
    num_ops: int = 2,
    magnitude: float = 9,
    num_magnitude_bins: int = 31,
    random_magnitude: bool = False,
    cutout: float = 0.0,
    fill: float = 0.5,
    ops: Sequence[str] = OPS,
    value_range=(0.0, 1.0),
) -> jax.Array:
    """RandAugment with per-image random operations, pure and jit-compatible.

    Per image and layer: an op drawn uniformly from ``ops`` at magnitude
    ``magnitude / (num_magnitude_bins − 1)`` of its maximum (torchvision's magnitude
    space: factors ``1 ± 0.9`` for brightness/colour/contrast/sharpness, 30° rotation,
    shear 0.3, translation ``150/331`` of the size, posterize to 4..8 bits, solarize
    threshold ``1 → 0``) with a random sign; with ``random_magnitude`` the magnitude is
    uniform in ``[0, magnitude]`` per op (FixMatch's RandAugmentMC). Then, if ``cutout``
    > 0, a square of side ``U(0, cutout)·size`` at a random centre filled with ``fill``
    (FixMatch: 0.5). Rotate and shear act about the image centre; exposed pixels get
    ``fill``.

    Args:
      x: ``(n, h, w, c)`` float images.
      key: PRNG key.
      num_ops, magnitude, num_magnitude_bins, random_magnitude: RandAugment's N and M.
      cutout: the largest cutout side as a fraction of the image (0: none).
      fill: pixel value (in ``[0, 1]``) of cutout and exposed regions.
      ops: a subset of :data:`OPS`.
      value_range: ``(lo, hi)``, scalars or per-channel, that map to ``[0, 1]``; the
        output is mapped back. Values are clipped to it.

    Raises:
      ValueError: for non-image input, an unknown op or a magnitude out of range.
    """
    _check_images(x, "rand_augment")
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise ValueError(f"rand_augment: unknown ops {bad or list(ops)}; valid: {list(OPS)}.")
    if not (0 <= magnitude <= num_magnitude_bins - 1 and num_ops >= 0 and 0 <= cutout <= 1):
        raise ValueError(
            f"rand_augment: need 0 <= magnitude <= num_magnitude_bins - 1 "
            f"({num_magnitude_bins - 1}), num_ops >= 0 and 0 <= cutout <= 1; got "
            f"magnitude={magnitude}, num_ops={num_ops}, cutout={cutout}."
        )
    lo = jnp.asarray(value_range[0], x.dtype)
    hi = jnp.asarray(value_range[1], x.dtype)
    span = jnp.where(hi > lo, hi - lo, 1.0)
    y = jnp.clip((x - lo) / span, 0.0, 1.0)
    u = jax.random.uniform(key, (x.shape[0], 3 * num_ops + 3))
    top = magnitude / (num_magnitude_bins - 1)
    n_ops = len(ops)

    def layer(k, img, ui):
        uk = jax.lax.dynamic_slice(ui, (3 * k,), (3,))
        op_id = jnp.minimum(jnp.floor(uk[0] * n_ops).astype(jnp.int32), n_ops - 1)
        level = uk[1] * top if random_magnitude else jnp.asarray(top, img.dtype)
        sign = jnp.where(uk[2] < 0.5, -1.0, 1.0).astype(img.dtype)
        return _apply_op(img, op_id, level, sign, tuple(ops), fill)

    def one(img, ui):
        # A loop, not an unrolled sequence: one copy of the ops to compile.
        img = jax.lax.fori_loop(0, num_ops, lambda k, im: layer(k, im, ui), img)
        if cutout > 0:
            img = _cutout(img, ui[3 * num_ops :], cutout, fill)
        return img

    y = jax.vmap(one)(y, u)
    return (y * span + lo).astype(x.dtype)


# --- composition from the config ------------------------------------------------------

STAGES = {
    "crop": (random_resized_crop, ("scale", "ratio")),
    "flip": (random_flip, ("p",)),
    "randaugment": (
        rand_augment,
        ("num_ops", "magnitude", "num_magnitude_bins", "random_magnitude", "cutout", "fill", "ops"),
    ),
}
ALIASES = {"none": "", "crop_flip": "crop+flip"}


def make(policy: str, *, mean=None, std=None, **kwargs) -> Transform:
    """Composes the stages named in ``policy`` into one ``fn(x, key) -> x``.

    Args:
      policy: ``"none"``, or stage names joined by ``+`` and applied in order, from
        ``crop`` (:func:`random_resized_crop`), ``flip`` (:func:`random_flip`),
        ``randaugment`` (:func:`rand_augment`); ``"crop_flip"`` = ``"crop+flip"``.
      mean, std: if given, inputs are normalized pixels ``(p − mean) / std``: the stages
        run on ``p`` (in ``[0, 1]``) and the result is normalized again.
      **kwargs: options of the stages, each routed to the stage that takes it (e.g.
        ``scale=(0.5, 1)`` to ``crop``, ``magnitude=10`` to ``randaugment``).

    Returns:
      The transform; each stage gets its own key folded from ``key``.

    Raises:
      ValueError: for an unknown stage or an option no chosen stage takes.
    """
    names = [s for s in ALIASES.get(policy, policy).split("+") if s]
    bad = [s for s in names if s not in STAGES]
    if bad:
        raise ValueError(
            f"Unknown augmentation stage(s) {bad} in {policy!r}; valid: {sorted(STAGES)} "
            f"joined by '+', or {sorted(ALIASES)}."
        )
    taken = {k for s in names for k in STAGES[s][1]}
    unused = sorted(set(kwargs) - taken)
    if unused:
        raise ValueError(
            f"Augmentation option(s) {unused} are not taken by the stages {names} of "
            f"{policy!r}; they take {sorted(taken)}."
        )
    stages = [
        (i, STAGES[s][0], {k: kwargs[k] for k in STAGES[s][1] if k in kwargs})
        for i, s in enumerate(names)
    ]

    def transform(x: jax.Array, key: jax.Array) -> jax.Array:
        if not stages:
            return x
        if mean is not None:
            x = denormalize(x, mean, std)
        for i, fn, kw in stages:
            x = fn(x, jax.random.fold_in(key, i), **kw)
        return normalize(x, mean, std) if mean is not None else x

    return transform


def for_inputs(policy: str, kwargs: dict, x, *, mean=None, std=None) -> Transform | None:
    """The transform of ``config.data.augment`` for train inputs like ``x``, or ``None`` for
    ``"none"``.

    Args:
      policy, kwargs: ``config.data.augment`` and ``config.data.augment_kwargs``.
      x: example inputs (e.g. the source train split) to check that they are images.
      mean, std: the standardisation already applied to ``x`` (``data.standardize``), so
        the stages see pixels in ``[0, 1]``.

    Raises:
      ValueError: for non-image inputs, or a bad policy or option (see :func:`make`).
    """
    transform = make(policy, mean=mean, std=std, **kwargs)
    if not ALIASES.get(policy, policy):
        return None
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"data.augment={policy!r} needs float NHWC images, but the task's inputs have "
            f"shape {tuple(x.shape)} and dtype {x.dtype}; use data.augment='none'."
        )
    return transform

r"""CoTTA: continual test-time domain adaptation (Wang et al., CVPR 2022).

Three copies of the model, all with BatchNorm on batch statistics: the *student* (the
adapted weights, ``AdaptState.params``), the *teacher* (an exponential moving average of
the student, ``AdaptState.extra["teacher"]``) and the *anchor* (the source weights,
fixed). On a test batch ``x``:

1. the anchor's mean confidence ``mean_i max_c p^anchor_ic`` decides the teacher's
   target: below the threshold ``ap`` it is the average of the teacher's logits over
   ``N`` augmented views of ``x``, otherwise the teacher's logits on ``x``;
2. the student minimises the cross-entropy to the teacher's soft predictions,
   ``L = −1/B Σ_i Σ_c softmax(z^T_i)_c log softmax(z^S_i)_c``, one optimizer step;
3. the teacher moves: ``θ^T ← α θ^T + (1 − α) θ^S`` (the updated student);
4. *stochastic restore*: every trained parameter element is reset to its source value
   with probability ``p`` (an independent Bernoulli draw per element and step).

The predictions are the teacher's target logits of step 1 (the paper's and code's
output). The order of the steps and every constant follow the official code
(``github.com/qinenergy/cotta``, ``cifar/cotta.py`` and ``cifar/cfgs/cifar10/cotta.yaml``):
``α = 0.999`` (``MT``), ``p = 0.01`` (``RST``), ``ap = 0.92`` (``AP``, CIFAR-10; the
threshold is applied to the anchor's confidence, as the code does), Adam lr 1e-3, all
``weight``/``bias`` parameters trained (``trainable="all"``; ``"bn"`` trains only the
BatchNorm scale/bias, restoring only those), ``N = 32`` views in the code; the default
here is ``num_augmentations=4`` for CPU speed. The average is over the augmented views
only (the un-augmented teacher output is not in it), as in the code.

The augmentations (:func:`augment`) are jit-able stand-ins for the code's
``get_tta_transforms`` (torchvision ``ColorJitterPro`` → edge pad + ``RandomAffine`` →
``GaussianBlur`` → centre crop → horizontal flip → Gaussian noise, clip to ``[0, 1]``),
with its ranges: brightness ×U(0.6, 1.4), contrast U(0.7, 1.3) about the image mean,
saturation U(0.5, 1.5) (RGB only), gamma U(0.7, 1.3), rotation U(−15°, 15°), translation
U(−1/16, 1/16) of the size, scale U(0.9, 1.1), bilinear with edge-replicated borders,
Gaussian noise σ = 0.005. Left out: hue jitter and the σ ≤ 0.5 Gaussian blur (a blur of
at most half a pixel); the horizontal flip is off by default (``flip=True`` turns it on):
digits are not mirror-symmetric classes. uint8 inputs are augmented as ``[0, 1]`` pixels
and rounded back to uint8 (the stream's own format, then ``ctx.to_float``); float inputs
(already standardised) are augmented in their own range without clipping or gamma.
:mod:`tljax.data.augment` is not used: its photometric ops assume ``[0, 1]`` pixels, its
affine warp fills with a constant (CoTTA pads by edge replication) and its policies are
RandAugment's, not CoTTA's; the bilinear sampling is the same.

Randomness: one ``jax.random.uniform`` draw per step (each random call costs XLA:CPU
seconds of compile time), laid out as the views' numbers ``(N, B,``
:func:`uniforms_per_view` ``)`` followed by one number per trained element for the
restore (leaf by leaf, tree order).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import ndtri

from tljax import optim
from tljax.adaptation.base import (
    AdaptState,
    Context,
    TTAMethod,
    batch_norm_affine_rules,
    batch_norm_param_paths,
    forward,
    initial_state,
)

TRAINABLE = ("all", "bn")
# (low, high) of the per-image draws of `augment` (the official get_tta_transforms):
# brightness, contrast, saturation, gamma, rotation (degrees), scale, row and column
# shift (fractions of the size), flip (< 0.5: mirrored).
_RANGES = (
    (0.6, 1.4),
    (0.7, 1.3),
    (0.5, 1.5),
    (0.7, 1.3),
    (-15.0, 15.0),
    (0.9, 1.1),
    (-1 / 16, 1 / 16),
    (-1 / 16, 1 / 16),
    (0.0, 1.0),
)


def _warp(img, matrix):
    """``img`` (h, w, c) resampled at ``matrix @ (row, col, 1)`` about the centre,
    bilinear, borders replicated (source coordinates clamped to the image)."""
    h, w, c = img.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows, cols = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
    src = jnp.einsum("ij,jhw->ihw", matrix, jnp.stack([rows, cols, jnp.ones_like(rows)]))
    r = jnp.clip(src[0] + cy, 0, h - 1)
    q = jnp.clip(src[1] + cx, 0, w - 1)
    r0 = jnp.minimum(jnp.floor(r), h - 2)
    q0 = jnp.minimum(jnp.floor(q), w - 2)
    fr, fq = (r - r0)[..., None], (q - q0)[..., None]
    flat = img.reshape(h * w, c)
    at = lambda rr, qq: flat[(rr * w + qq).astype(jnp.int32)]  # noqa: E731
    top = (1 - fq) * at(r0, q0) + fq * at(r0, q0 + 1)
    bottom = (1 - fq) * at(r0 + 1, q0) + fq * at(r0 + 1, q0 + 1)
    return (1 - fr) * top + fr * bottom


def uniforms_per_view(shape) -> int:
    """How many ``U(0, 1)`` numbers :func:`augment_from_uniform` takes per image of a batch
    of ``shape`` ``(n, h, w, c)``."""
    return len(_RANGES) + math.prod(shape[1:])


def augment(x: jax.Array, key: jax.Array, *, flip: bool = False, noise: float = 0.005):
    """One random view of every image of the batch ``x`` (``(n, h, w, c)``, uint8 pixels
    or floats); see the module docstring for the transforms. Returns ``x``'s shape and
    dtype."""
    u = jax.random.uniform(key, (x.shape[0], uniforms_per_view(x.shape)), jnp.float32)
    return augment_from_uniform(x, u, flip=flip, noise=noise)


def augment_from_uniform(x: jax.Array, u: jax.Array, *, flip: bool = False, noise: float = 0.005):
    """:func:`augment` with its random numbers given: ``u`` is ``(n, uniforms_per_view)``
    ``U(0, 1)`` numbers, the per-image parameters first, then the Gaussian noise (through
    the inverse normal CDF). One random draw in all: every ``jax.random`` call costs
    XLA:CPU seconds of compile time."""
    pixels = x.dtype == jnp.uint8
    v = x.astype(jnp.float32) / 255.0 if pixels else x.astype(jnp.float32)
    n, h, w, c = v.shape
    k = len(_RANGES)
    lo, hi = jnp.array(_RANGES, jnp.float32).T
    draws = lo + (hi - lo) * u[:, :k]
    b, ct, s, g, angle, scale, dy, dx, mirror = (draws[:, i] for i in range(k))
    per_image = lambda a: a[:, None, None, None]  # noqa: E731
    v = v * per_image(b)
    mean = jnp.mean(v, axis=(1, 2, 3), keepdims=True)
    v = mean + per_image(ct) * (v - mean)
    if c == 3:
        gray = (v @ jnp.array([0.299, 0.587, 0.114], jnp.float32))[..., None]
        v = gray + per_image(s) * (v - gray)
    if pixels:
        v = jnp.clip(v, 0.0, 1.0) ** per_image(g)
    angle = angle * math.pi / 180
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    # output (row, col) -> source: the inverse rotation and scale, then the shift
    matrix = jnp.stack(
        [
            jnp.stack([cos, -sin, -dy * h], -1),
            jnp.stack([sin, cos, -dx * w], -1),
        ],
        1,
    )
    v = jax.vmap(_warp)(v, matrix)
    if flip:
        v = jnp.where(per_image(mirror) < 0.5, v[:, :, ::-1], v)
    gauss = ndtri(jnp.clip(u[:, k:], 1e-7, 1 - 1e-7)).reshape(v.shape)
    v = v + noise * gauss
    if pixels:
        return jnp.round(jnp.clip(v, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    return v.astype(x.dtype)


def soft_cross_entropy(logits: jax.Array, target_logits: jax.Array) -> jax.Array:
    """``−1/B Σ_i Σ_c softmax(t_i)_c log softmax(z_i)_c`` (no gradient through ``t``)."""
    t = jax.nn.softmax(jax.lax.stop_gradient(target_logits), axis=-1)
    return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def ema(teacher, student, alpha: float):
    """``α θ^T + (1 − α) θ^S`` leaf by leaf."""
    return jax.tree.map(lambda t, s: alpha * t + (1 - alpha) * s, teacher, student)


def stochastic_restore(params, source, trained, key, p: float):
    """Each element of a ``trained`` leaf is replaced by its ``source`` value with
    probability ``p`` (independent draws per element); other leaves are returned as they
    are."""
    u = jax.random.uniform(key, (num_trained(params, trained),), jnp.float32)
    return restore_from_uniform(params, source, trained, u, p)


def num_trained(params, trained) -> int:
    """Number of elements in the ``trained`` leaves."""
    flags = jax.tree.structure(params).flatten_up_to(trained)
    return sum(x.size for x, t in zip(jax.tree.leaves(params), flags) if t)


def restore_from_uniform(params, source, trained, u, p: float):
    """:func:`stochastic_restore` with its ``U(0, 1)`` numbers given: ``u`` has one entry
    per trained element, leaf by leaf in tree order; an element is restored if ``u < p``."""
    leaves, treedef = jax.tree.flatten(params)
    flags = treedef.flatten_up_to(trained)
    out, at = [], 0
    for x, s, t in zip(leaves, treedef.flatten_up_to(source), flags):
        if t:
            x = jnp.where(u[at : at + x.size].reshape(x.shape) < p, s, x)
            at += x.size
        out.append(x)
    return jax.tree.unflatten(treedef, out)


def make(
    ctx: Context,
    *,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    ema_alpha: float = 0.999,
    restore_p: float = 0.01,
    ap: float = 0.92,
    num_augmentations: int = 4,
    trainable: str = "all",
    flip: bool = False,
    noise: float = 0.005,
) -> TTAMethod:
    """CoTTA.

    Args:
      lr, optimizer, momentum, weight_decay: the student's optimizer (Adam 1e-3, as the
        official CIFAR configs).
      ema_alpha: the teacher's EMA factor ``α``.
      restore_p: the stochastic-restore probability ``p``.
      ap: the anchor-confidence threshold below which the target is augmentation-averaged
        (0: never; above 1: always).
      num_augmentations: ``N`` augmented views.
      trainable: ``"all"`` parameters or only the BatchNorm scale/bias (``"bn"``).
      flip: include the random horizontal flip.
      noise: Gaussian noise σ of the views.

    Raises:
      ValueError: a bad ``trainable``, ``num_augmentations``, ``ema_alpha`` or
        ``restore_p``; no BatchNorm layer (the method normalises with batch statistics).
    """
    if trainable not in TRAINABLE:
        raise ValueError(f"cotta: unknown trainable={trainable!r}; valid: {list(TRAINABLE)}.")
    if num_augmentations < 1 or not 0 <= ema_alpha <= 1 or not 0 <= restore_p <= 1:
        raise ValueError(
            "cotta: need num_augmentations >= 1 and ema_alpha, restore_p in [0, 1]; got "
            f"{num_augmentations}, {ema_alpha}, {restore_p}."
        )
    if not batch_norm_param_paths(ctx):
        raise ValueError("cotta: the model has no BatchNorm layer (it adapts on batch statistics).")
    rules = batch_norm_affine_rules(ctx) if trainable == "bn" else [(".*", 1.0)]
    tx, labels, report = optim.make_optimizer(
        ctx.params,
        rules,
        optimizer=optimizer,
        schedule=optax.constant_schedule(lr),
        momentum=momentum,
        nesterov=False,
        weight_decay=weight_decay,
    )
    frozen = optim.frozen_mask(labels)
    trained = jax.tree.map(lambda f: not f, frozen)

    restore_size = num_trained(ctx.params, trained)

    def draw(key, shape):
        """The step's one random draw: ``(N, n, uniforms_per_view)`` numbers for the
        views, then one per trained element for the restore."""
        per = uniforms_per_view(shape)
        views = num_augmentations * shape[0] * per
        u = jax.random.uniform(key, (views + restore_size,), jnp.float32)
        return u[:views].reshape(num_augmentations, shape[0], per), u[views:]

    def init() -> AdaptState:
        extra = {"teacher": jax.tree.map(jnp.copy, ctx.params)}
        return initial_state(ctx, opt_state=tx.init(ctx.params), extra=extra)

    def target(state: AdaptState, x, u):
        """The teacher's target logits and whether they were augmentation-averaged."""
        teacher = state.extra["teacher"]
        anchor = forward(ctx, ctx.params, ctx.rest, x, batch_stats=True)[0]
        confidence = jnp.mean(jnp.max(jax.nn.softmax(anchor, -1), -1))
        averaged = confidence < ap

        def views():
            def view(uv):
                xa = augment_from_uniform(x, uv, flip=flip, noise=noise)
                return forward(ctx, teacher, state.rest, xa, batch_stats=True)[0]

            return jnp.mean(jax.lax.map(view, u), 0)

        plain = lambda: forward(ctx, teacher, state.rest, x, batch_stats=True)[0]  # noqa: E731
        return jax.lax.cond(averaged, views, plain), averaged, confidence

    def update(state: AdaptState, x, rng=None):
        u_views, u_restore = draw(jax.random.key(0) if rng is None else rng, x.shape)
        tgt, averaged, confidence = target(state, x, u_views)
        tgt = jax.lax.stop_gradient(tgt)

        def loss_fn(params):
            params = jax.tree.map(lambda f, p: jax.lax.stop_gradient(p) if f else p, frozen, params)
            logits, _ = forward(ctx, params, state.rest, x, batch_stats=True)
            return soft_cross_entropy(logits, tgt)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = optax.apply_updates(state.params, updates)
        student = jax.tree.map(lambda f, old, p: old if f else p, frozen, state.params, new)
        # frozen leaves are equal in both: kept bitwise (α·a + (1 − α)·a may round)
        moved = ema(state.extra["teacher"], student, ema_alpha)
        teacher = jax.tree.map(
            lambda f, old, t: old if f else t, frozen, state.extra["teacher"], moved
        )
        student = restore_from_uniform(student, ctx.params, trained, u_restore, restore_p)
        state = state.replace(
            params=student,
            opt_state=opt_state,
            extra={"teacher": teacher},
            step=state.step + 1,
        )
        metrics = {
            "loss": loss,
            "augmented": averaged.astype(jnp.float32),
            "anchor_confidence": confidence,
        }
        return state, tgt, metrics

    def predict(state: AdaptState, x):
        return forward(ctx, state.extra["teacher"], state.rest, x, batch_stats=True)[0]

    hp = dict(
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        ema_alpha=ema_alpha,
        restore_p=restore_p,
        ap=ap,
        num_augmentations=num_augmentations,
        trainable=trainable,
        flip=flip,
        noise=noise,
        trained=sorted(p for p, (_, r) in report.items() if r is not None),
    )
    return TTAMethod("cotta", init, update, predict, hp)

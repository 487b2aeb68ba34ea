r"""SimCLR: self-supervised pretraining by contrasting augmented views (Chen, Kornblith,
Norouzi & Hinton, ICML 2020).

.. math::
   L = \frac{1}{2N}\sum_{i=1}^{2N} -\log
   \frac{\exp(\mathrm{sim}(z_i, z_{p(i)})/\tau)}{\sum_{k\ne i}\exp(\mathrm{sim}(z_i, z_k)/\tau)},
   \qquad z = g(F(t(x))),\; t \sim \mathcal{T}

Each image of the batch gets two random views ``t(x)``, ``t'(x)`` drawn inside the
jit-compiled step (:func:`augment`: random resized crop, horizontal flip, contrast and
brightness jitter, Gaussian noise); the backbone ``F`` and the projection head ``g``
(``Linear → ReLU → Linear``, the method's own network under ``method/``) are trained so
each view picks its partner among the ``2N − 1`` others (NT-Xent,
:func:`tljax.losses.contrastive.nt_xent`; both views in one forward pass, so BatchNorm
sees all ``2N``). Labels do not reach the backbone. With ``online_probe`` (default) the
classification head is trained at the same time as a linear probe on the *detached*
features of the first view (``CE(C(sg(F(t(x)))), y)``, as SimCLR's online evaluation),
so the run's reported accuracies are those of a linear probe; ``online_probe=False``
leaves the head untouched and the run label-free. ``loss = weight · NT-Xent + probe
CE``. Transfer with ``model.init_from`` (``init_include`` ``^model/backbone/``: the
projection head is dropped, as in the paper).

Defaults are for 28×28 grey images and short runs: ``τ = 0.5``, crop area
``U(0.3, 1)`` with aspect ratio in ``[3/4, 4/3]`` (the paper: ``U(0.08, 1)`` on
ImageNet), jitter 0.4 (the paper's colour jitter strength 0.5 has no hue/saturation on
grey images), projection ``256 → 64``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from tljax.losses.contrastive import nt_xent
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo, records_hparams


class ProjectionHead(nnx.Module):
    """``Linear → ReLU → Linear``: SimCLR's projection ``g``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(in_dim, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, out_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x)))


def _resample_matrix(start: jax.Array, length: jax.Array, size: int) -> jax.Array:
    """``(size, size)`` bilinear weights that resample ``[start, start + length)`` of an axis
    of ``size`` pixels onto ``size`` pixels (pixel centres; rows sum to 1)."""
    src = start + (jnp.arange(size) + 0.5) * (length / size) - 0.5
    src = jnp.clip(src, 0.0, size - 1.0)
    return jnp.maximum(0.0, 1.0 - jnp.abs(src[:, None] - jnp.arange(size)[None, :]))


def _view(x, u, min_scale: float, flip: bool, jitter: float, noise_std: float):
    """One view of one image ``(h, w, c)`` from uniforms ``u`` of shape ``(7 + h·w·c,)``."""
    h, w, c = x.shape
    area = min_scale + (1.0 - min_scale) * u[0]
    ratio = jnp.exp(jnp.log(0.75) + (jnp.log(4 / 3) - jnp.log(0.75)) * u[1])
    ch = jnp.clip(h * jnp.sqrt(area / ratio), 1.0, h)
    cw = jnp.clip(w * jnp.sqrt(area * ratio), 1.0, w)
    y0, x0 = u[2] * (h - ch), u[3] * (w - cw)
    # Separable bilinear crop-and-resize as two small matrix products.
    rows, cols = _resample_matrix(y0, ch, h), _resample_matrix(x0, cw, w)
    x = jnp.einsum("ij,jkc,lk->ilc", rows, x, cols)
    if flip:
        x = jnp.where(u[4] < 0.5, x[:, ::-1], x)
    mean, std = jnp.mean(x), jnp.std(x) + 1e-6
    if jitter > 0:
        contrast = 1.0 - jitter + 2.0 * jitter * u[5]
        bright = -jitter + 2.0 * jitter * u[6]
        x = mean + contrast * (x - mean) + bright * std
    if noise_std > 0:  # standard normal by inverse CDF, as jax.random.normal
        p = jnp.clip(u[7:], 1e-7, 1.0 - 1e-7).reshape(x.shape)
        x = x + noise_std * jnp.sqrt(2.0) * jax.scipy.special.erfinv(2.0 * p - 1.0)
    return x


def _check_strengths(min_scale: float, jitter: float, noise_std: float) -> None:
    if not (0 < min_scale <= 1 and 0 <= jitter < 1 and noise_std >= 0):
        raise ValueError(
            f"simclr: need 0 < min_scale <= 1, 0 <= jitter < 1 and noise_std >= 0; got "
            f"min_scale={min_scale!r}, jitter={jitter!r}, noise_std={noise_std!r}."
        )


def augment(
    x: jax.Array,
    key: jax.Array,
    *,
    min_scale: float = 0.3,
    flip: bool = True,
    jitter: float = 0.4,
    noise_std: float = 0.05,
) -> jax.Array:
    """One random SimCLR view of each image of ``x`` ``(n, h, w, c)``; pure and jittable.

    Per image: a crop of area ``U(min_scale, 1)`` of the image and aspect ratio in
    ``[3/4, 4/3]`` (log-uniform) at a random position, resized back to ``h × w``
    (bilinear); a horizontal flip with probability ½ (if ``flip``); contrast
    ``×U(1−j, 1+j)`` about the image mean and brightness ``+U(−j, j)·std``; Gaussian
    noise of standard deviation ``noise_std``.

    Raises:
      ValueError: if ``x`` is not 4-D or a strength is out of range.
    """
    if x.ndim != 4:
        raise ValueError(f"simclr.augment expects NHWC images, got shape {tuple(x.shape)}.")
    _check_strengths(min_scale, jitter, noise_std)
    # All randomness in one draw: each random call costs ~1 s of XLA:CPU compile time.
    u = jax.random.uniform(key, (x.shape[0], 7 + math.prod(x.shape[1:])))
    fn = lambda xi, ui: _view(xi.astype(jnp.float32), ui, min_scale, flip, jitter, noise_std)
    return jax.vmap(fn)(x, u).astype(x.dtype)


@records_hparams
def make(
    *,
    temperature: float = 0.5,
    proj_hidden: int = 256,
    proj_dim: int = 64,
    min_scale: float = 0.3,
    flip: bool = True,
    jitter: float = 0.4,
    noise_std: float = 0.05,
    online_probe: bool = True,
) -> Method:
    """Builds SimCLR.

    Args:
      temperature: NT-Xent temperature ``τ > 0``.
      proj_hidden, proj_dim: widths of the projection head.
      min_scale, flip, jitter, noise_std: the augmentation (see :func:`augment`).
      online_probe: train the classification head on detached features (a linear probe).

    Raises:
      ValueError: for a non-positive temperature or width, or a bad augmentation strength.
    """
    if not temperature > 0:
        raise ValueError(f"simclr: temperature must be > 0, got {temperature!r}.")
    if not (proj_hidden >= 1 and proj_dim >= 1):
        raise ValueError(f"simclr: projection widths must be >= 1, got {proj_hidden}, {proj_dim}.")
    aug = dict(min_scale=min_scale, flip=flip, jitter=jitter, noise_std=noise_std)
    _check_strengths(min_scale, jitter, noise_std)

    def init(rngs: nnx.Rngs, info: ModelInfo) -> ProjectionHead:
        return ProjectionHead(info.feature_dim, proj_hidden, proj_dim, rngs=rngs)

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        xs, labels = batch["source"]["image"], batch["source"]["label"]
        k1, k2 = jax.random.split(ctx.rng)
        views = jnp.concatenate([augment(xs, k1, **aug), augment(xs, k2, **aug)], axis=0)
        logits, out = ctx.net.model(ctx.cast(views))
        feats, n = out["features"], xs.shape[0]
        z = ctx.net.method(feats).astype(jnp.float32)
        contrastive = nt_xent(z[:n], z[n:], temperature=temperature)
        if online_probe:
            probe = ctx.net.model.head(jax.lax.stop_gradient(feats[:n])).astype(jnp.float32)
            task = _steps.cross_entropy(probe, labels)
        else:
            probe, task = logits[:n], jnp.zeros((), jnp.float32)
        return _steps.Losses(task, contrastive, _steps.accuracy(probe, labels))

    return Method(
        name="simclr",
        init=init,
        train_step=_steps.own_step(objective, name="simclr"),
        needs_target=False,
    )

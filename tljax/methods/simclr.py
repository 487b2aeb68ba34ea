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

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.losses.contrastive import nt_xent
from tljax.methods import _steps
from tljax.methods.base import Method, ModelInfo


class ProjectionHead(nnx.Module):
    """``Linear → ReLU → Linear``: SimCLR's projection ``g``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(in_dim, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, out_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(nnx.relu(self.hidden(x)))


def _view(x, key, min_scale: float, flip: bool, jitter: float, noise_std: float):
    h, w, c = x.shape
    k_area, k_ratio, k_y, k_x, k_flip, k_con, k_bri, k_noise = jax.random.split(key, 8)
    area = jax.random.uniform(k_area, (), minval=min_scale, maxval=1.0)
    ratio = jnp.exp(jax.random.uniform(k_ratio, (), minval=jnp.log(0.75), maxval=jnp.log(4 / 3)))
    ch = jnp.clip(h * jnp.sqrt(area / ratio), 1.0, h)
    cw = jnp.clip(w * jnp.sqrt(area * ratio), 1.0, w)
    y0 = jax.random.uniform(k_y) * (h - ch)
    x0 = jax.random.uniform(k_x) * (w - cw)
    scale = jnp.stack([h / ch, w / cw])
    # Output pixel u comes from input pixel (u - translation) / scale: the crop fills the frame.
    x = jax.image.scale_and_translate(
        x, (h, w, c), (0, 1), scale, -jnp.stack([y0, x0]) * scale, "linear", antialias=False
    )
    if flip:
        x = jnp.where(jax.random.bernoulli(k_flip), x[:, ::-1], x)
    mean, std = jnp.mean(x), jnp.std(x) + 1e-6
    if jitter > 0:
        contrast = jax.random.uniform(k_con, (), minval=1 - jitter, maxval=1 + jitter)
        bright = jax.random.uniform(k_bri, (), minval=-jitter, maxval=jitter)
        x = mean + contrast * (x - mean) + bright * std
    if noise_std > 0:
        x = x + noise_std * jax.random.normal(k_noise, x.shape, x.dtype)
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
    keys = jax.random.split(key, x.shape[0])
    fn = lambda xi, k: _view(xi.astype(jnp.float32), k, min_scale, flip, jitter, noise_std)
    return jax.vmap(fn)(x, keys).astype(x.dtype)


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

    def loss(module, *, src, tgt, rng, step):
        raise NotImplementedError("simclr trains with its own train_step.")

    def train_step(*, model, tx, frozen, weight, num_classes, lr_schedule=None, compute_dtype=None):
        del num_classes

        def loss_fn(params, rest, batch, rng):
            params = _steps.stop_gradient_where(params, frozen)
            net = nnx.merge(model.train_graph, _steps.cast_floats(params, compute_dtype), rest)
            xs, labels = batch["source"]["image"], batch["source"]["label"]
            k1, k2 = jax.random.split(rng)
            views = jnp.concatenate([augment(xs, k1, **aug), augment(xs, k2, **aug)], axis=0)
            logits, out = net.model(_steps.cast_floats(views, compute_dtype))
            feats, n = out["features"], xs.shape[0]
            z = net.method(feats).astype(jnp.float32)
            contrastive = nt_xent(z[:n], z[n:], temperature=temperature)
            if online_probe:
                probe = net.model.head(jax.lax.stop_gradient(feats[:n])).astype(jnp.float32)
                task = _steps.cross_entropy(probe, labels)
            else:
                probe, task = logits[:n], jnp.zeros((), jnp.float32)
            metrics = {
                "loss": weight * contrastive + task,
                "task_loss": task,
                "method_loss": contrastive,
                "source_acc": jnp.mean(jnp.argmax(probe, -1) == labels),
            }
            return metrics["loss"], (_steps.updated_rest(net, rest), metrics)

        def step(state, batch, rng=None):
            rng = _steps.step_rng(state, rng)
            grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(
                state.params, state.rest, batch, rng
            )
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return _steps.finish(
                state,
                params=params,
                rest=rest,
                opt_state=opt_state,
                metrics=metrics,
                lr_schedule=lr_schedule,
            )

        return step

    hp = dict(
        temperature=temperature,
        proj_hidden=proj_hidden,
        proj_dim=proj_dim,
        online_probe=online_probe,
        **aug,
    )
    return Method(
        name="simclr",
        init=init,
        loss=loss,
        train_step=train_step,
        hparams=hp,
        needs_target=False,
    )

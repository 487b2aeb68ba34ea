r"""Confidence-thresholded self-training, FixMatch-style (Sohn et al., NeurIPS 2020).

.. math::
   L = \mathbb{E}_s[\ell(C(F(x)), y)] + \lambda\, \tfrac{1}{B}\textstyle\sum_i
   \mathbb{1}[\max_c q_{ic} \ge \tau]\; \ell\big(C(F(\mathcal{A}(x_{t,i}))), \arg\max_c q_{ic}\big),
   \qquad q_i = \mathrm{softmax}(\mathrm{sg}(C(F(x_{t,i}))))

The weak view is the target batch itself (flipped and cropped when the run sets
``data.augment="crop_flip"``, FixMatch's weak augmentation); the strong view ``𝒜(x_t)``
is drawn inside the jit-compiled step from the step's rng by :func:`augment` (random
translation by reflect padding and cropping, brightness/contrast jitter, Gaussian noise,
cutout; for vector inputs only the noise), or with ``strong="randaugment"`` by
FixMatch's RandAugment (:func:`rand_augment`: ``randaugment_ops`` random operations of
random magnitude up to ``randaugment_magnitude`` of 30, then cutout). Source, weak and
strong views go through the model in one forward pass (BatchNorm sees all three, as
TLlib's FixMatch example). The mask uses ``≥ τ``. TLlib's FixMatch for domain adaptation
uses ``τ = 0.9`` and trade-off 1 (the FixMatch paper: 0.95 with RandAugment). Loss:
:func:`tljax.losses.self_training.pseudo_label_loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tljax.data import augment as augment_lib
from tljax.losses.self_training import pseudo_label_loss
from tljax.methods import _steps
from tljax.methods.base import Method, no_params, records_hparams


def _augment_image(
    x: jax.Array, key: jax.Array, shift: int, jitter: float, noise_std: float, cutout: float
) -> jax.Array:
    h, w, c = x.shape
    k_shift, k_contrast, k_bright, k_noise, k_cut, k_size = jax.random.split(key, 6)
    if shift > 0:
        padded = jnp.pad(x, ((shift, shift), (shift, shift), (0, 0)), mode="reflect")
        dy, dx = jax.random.randint(k_shift, (2,), 0, 2 * shift + 1)
        x = jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, c))
    mean, std = jnp.mean(x), jnp.std(x) + 1e-6
    if jitter > 0:
        contrast = jax.random.uniform(k_contrast, (), minval=1 - jitter, maxval=1 + jitter)
        bright = jax.random.uniform(k_bright, (), minval=-jitter, maxval=jitter)
        x = mean + contrast * (x - mean) + bright * std
    if noise_std > 0:
        x = x + noise_std * std * jax.random.normal(k_noise, x.shape, x.dtype)
    if cutout > 0:
        size = jax.random.uniform(k_size, (), maxval=cutout) * jnp.array([h, w])
        cy, cx = jax.random.uniform(k_cut, (2,)) * jnp.array([h, w])
        rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
        box = (jnp.abs(rows - cy) < size[0] / 2) & (jnp.abs(cols - cx) < size[1] / 2)
        x = jnp.where(box[:, :, None], mean, x)
    return x


def augment(
    x: jax.Array,
    key: jax.Array,
    *,
    shift: float = 0.125,
    jitter: float = 0.4,
    noise_std: float = 0.1,
    cutout: float = 0.5,
) -> jax.Array:
    """A random strong augmentation of a batch, pure and jit-compatible.

    For images ``(n, h, w, c)``, per example: translation by up to ``round(shift·h)``
    pixels (reflect padding, random crop), contrast ``×U(1−j, 1+j)`` and brightness
    ``+U(−j, j)·std`` about the image mean, Gaussian noise of ``noise_std·std``, and a
    cutout square of side ``U(0, cutout)·size`` filled with the image mean (FixMatch's
    cutout goes up to half the image). For any other shape: Gaussian noise of
    ``noise_std`` times each feature's batch standard deviation.

    Args:
      x: the batch.
      key: PRNG key.
      shift, jitter, noise_std, cutout: strengths (0 disables one).

    Returns:
      An array like ``x``.
    """
    keys = jax.random.split(key, x.shape[0])
    if x.ndim == 4:
        pixels = int(round(shift * x.shape[1]))
        fn = lambda xi, k: _augment_image(xi, k, pixels, jitter, noise_std, cutout)
        return jax.vmap(fn)(x, keys).astype(x.dtype)
    std = jnp.std(x, axis=0, keepdims=True)
    return x + noise_std * std * jax.random.normal(key, x.shape, x.dtype)


def rand_augment(x: jax.Array, key: jax.Array, *, num_ops: int, magnitude: float, cutout: float):
    """FixMatch's strong view: RandAugment with random magnitudes up to ``magnitude`` (of
    30) and a cutout square of side up to ``cutout``. Inputs may be standardised: each
    channel's range over the batch is mapped to ``[0, 1]`` and back."""
    lo, hi = jnp.min(x, axis=(0, 1, 2)), jnp.max(x, axis=(0, 1, 2))
    return augment_lib.rand_augment(
        x,
        key,
        num_ops=num_ops,
        magnitude=magnitude,
        num_magnitude_bins=31,
        random_magnitude=True,
        cutout=cutout,
        value_range=(lo, hi),
    )


STRONG = ("default", "randaugment")


@records_hparams
def make(
    *,
    threshold: float = 0.9,
    shift: float = 0.125,
    jitter: float = 0.4,
    noise_std: float = 0.1,
    cutout: float = 0.5,
    strong: str = "default",
    randaugment_ops: int = 2,
    randaugment_magnitude: float = 30,
) -> Method:
    """Builds confidence-thresholded self-training.

    Args:
      threshold: confidence threshold τ in ``[0, 1]``.
      shift, jitter, noise_std, cutout: strengths of the strong augmentation
        (see :func:`augment`); ``cutout`` also applies to ``"randaugment"``.
      strong: the strong view: ``"default"`` (:func:`augment`) or ``"randaugment"``
        (:func:`rand_augment`, image inputs only).
      randaugment_ops, randaugment_magnitude: RandAugment's N and largest M (of 30).

    Raises:
      ValueError: for a threshold outside ``[0, 1]``, a negative strength or an unknown
        ``strong``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"self_training: threshold must be in [0, 1], got {threshold!r}.")
    strengths = dict(shift=shift, jitter=jitter, noise_std=noise_std, cutout=cutout)
    bad = {k: v for k, v in strengths.items() if not v >= 0}
    if bad:
        raise ValueError(f"self_training: augmentation strengths must be >= 0, got {bad}.")
    if strong not in STRONG:
        raise ValueError(f"self_training: strong={strong!r}; valid: {list(STRONG)}.")
    if strong == "randaugment":
        ra = dict(num_ops=randaugment_ops, magnitude=randaugment_magnitude, cutout=cutout)
        augment_lib.rand_augment(jnp.zeros((1, 4, 4, 1)), jax.random.key(0), **ra)  # checks
        strong_view = lambda x, key: rand_augment(x, key, **ra)
    else:
        strong_view = lambda x, key: augment(x, key, **strengths)

    def objective(ctx: _steps.StepContext, batch) -> _steps.Losses:
        xs, xt = batch["source"]["image"], batch["target"]["image"]
        x = ctx.cast(jnp.concatenate([xs, xt, strong_view(xt, ctx.rng)], axis=0))
        logits, _ = ctx.net.model(x)
        logits = logits.astype(jnp.float32)
        n, m = xs.shape[0], xt.shape[0]
        ys, yt, yt_strong = logits[:n], logits[n : n + m], logits[n + m :]
        labels = batch["source"]["label"]
        task = _steps.cross_entropy(ys, labels)
        st_loss, mask_rate = pseudo_label_loss(yt, yt_strong, threshold=threshold)
        return _steps.Losses(task, st_loss, _steps.accuracy(ys, labels), {"mask_rate": mask_rate})

    train_step = _steps.own_step(objective, name="self_training")
    return Method(name="self_training", init=no_params, train_step=train_step)

r"""CDAN and CDAN+E: conditional domain adversarial network (Long et al., NeurIPS 2018).

.. math::
   \min_{F,C}\max_{D}\; \mathbb{E}_s[\ell(C(F(x)), y)]
   - \lambda\, \tfrac{1}{n}\textstyle\sum_i w_i\, \mathrm{BCE}\big(D(T(f_i, g_i)), d_i\big)

where ``g = sg(softmax(z))`` (the class probabilities, detached), ``T(f, g) = g ⊗ f`` the
multilinear map, ``d_i`` = 1 for source and 0 for target, and ``w_i = 1`` (CDAN) or the
entropy-conditioning weights ``w ∝ 1 + exp(−H(g_i))`` normalised to mean 1 (CDAN+E).

As TLlib's ``ConditionalDomainAdversarialLoss``: a gradient reversal layer with the
warm-start schedule (α=1, lo=0, hi=1, N=1000) sits between the map and the discriminator
(``T`` is linear in ``f`` once ``g`` is detached, so this equals reversing the features);
the discriminator (``in → 1024 → 1024 → 1`` with BatchNorm) sees source and target in one
batch and the BCE is averaged over that batch. When ``F · C > randomized_threshold``
(paper: 4096) the map is the randomized multilinear map ``(f R_f) ⊙ (g R_g) / √d`` with
``d = randomized_dim`` (1024) and fixed standard-normal ``R_f``, ``R_g`` drawn in ``init``
and stored as :class:`~tljax.methods.base.Buffer` (non-trainable state, never updated).
Maps: :mod:`tljax.losses.cdan`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tljax.losses.cdan import (
    entropy_conditioning_weights,
    multilinear_map,
    randomized_multilinear_map,
)
from tljax.losses.grl import gradient_reversal, warm_start_coefficient
from tljax.methods.base import Buffer, Method, ModelInfo
from tljax.models.heads import DomainDiscriminator


class CDANNets(nnx.Module):
    """The discriminator and, for the randomized map, the fixed random matrices."""

    def __init__(self, discriminator: nnx.Module, rf=None, rg=None):
        self.discriminator = discriminator
        self.rf = Buffer(rf) if rf is not None else None
        self.rg = Buffer(rg) if rg is not None else None


def conditioning_map(features: jax.Array, logits: jax.Array, rf=None, rg=None) -> jax.Array:
    """``T(f, sg(softmax(z)))``: the (randomized) multilinear map on detached probabilities.

    Args:
      features: ``(batch, F)``.
      logits: ``(batch, C)``; no gradient flows back to them.
      rf, rg: the random matrices ``(F, d)``, ``(C, d)``, or ``None`` for the full map.

    Returns:
      ``(batch, F·C)`` or ``(batch, d)``.
    """
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    features = features.astype(jnp.float32)
    if rf is None:
        return multilinear_map(features, probs)
    return randomized_multilinear_map(features, probs, rf, rg)


def make(
    *,
    entropy_conditioning: bool = False,
    randomized_threshold: int = 4096,
    randomized_dim: int = 1024,
    hidden: tuple[int, ...] = (1024, 1024),
    batch_norm: bool = True,
    grl_lo: float = 0.0,
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds CDAN (``entropy_conditioning=False``) or CDAN+E.

    Args:
      entropy_conditioning: weight examples by ``1 + exp(−entropy)`` (CDAN+E).
      randomized_threshold: use the randomized map when ``feature_dim · num_classes``
        exceeds this.
      randomized_dim: output width ``d`` of the randomized map.
      hidden: hidden widths of the domain discriminator.
      batch_norm: BatchNorm in the discriminator.
      grl_lo, grl_hi, grl_alpha, grl_max_iters: the GRL warm-start schedule.

    Raises:
      ValueError: for a non-positive ``randomized_dim`` or a negative threshold.
    """
    if not isinstance(randomized_dim, int) or randomized_dim < 1 or randomized_threshold < 0:
        raise ValueError(
            f"cdan: randomized_dim must be an int >= 1 and randomized_threshold >= 0, got "
            f"{randomized_dim!r} and {randomized_threshold!r}."
        )

    def init(rngs: nnx.Rngs, info: ModelInfo) -> CDANNets:
        full = info.feature_dim * info.num_classes
        if full <= randomized_threshold:
            disc = DomainDiscriminator(full, tuple(hidden), batch_norm=batch_norm, rngs=rngs)
            return CDANNets(disc)
        kf, kg = jax.random.split(rngs.params())
        rf = jax.random.normal(kf, (info.feature_dim, randomized_dim), jnp.float32)
        rg = jax.random.normal(kg, (info.num_classes, randomized_dim), jnp.float32)
        disc = DomainDiscriminator(randomized_dim, tuple(hidden), batch_norm=batch_norm, rngs=rngs)
        return CDANNets(disc, rf, rg)

    def loss(nets: CDANNets, *, src, tgt, rng, step):
        del rng
        coeff = warm_start_coefficient(
            step, lo=grl_lo, hi=grl_hi, alpha=grl_alpha, max_iters=grl_max_iters
        )
        f = jnp.concatenate([src.features, tgt.features], axis=0)
        z = jnp.concatenate([src.logits, tgt.logits], axis=0)
        rf = nets.rf[...] if nets.rf is not None else None
        rg = nets.rg[...] if nets.rg is not None else None
        h = gradient_reversal(conditioning_map(f, z, rf, rg), coeff)
        d = nets.discriminator(h).astype(jnp.float32)
        ns = src.features.shape[0]
        labels = jnp.concatenate([jnp.ones((ns,)), jnp.zeros((d.shape[0] - ns,))])
        bce = optax.sigmoid_binary_cross_entropy(d, labels)
        if entropy_conditioning:
            bce = bce * entropy_conditioning_weights(jax.nn.softmax(z, axis=-1))
        acc = jnp.mean((d > 0) == (labels > 0.5))
        return jnp.mean(bce), {"domain_acc": acc, "grl_coeff": coeff}

    hp = dict(
        entropy_conditioning=entropy_conditioning,
        randomized_threshold=randomized_threshold,
        randomized_dim=randomized_dim,
        hidden=tuple(hidden),
        batch_norm=batch_norm,
        grl_lo=grl_lo,
        grl_hi=grl_hi,
        grl_alpha=grl_alpha,
        grl_max_iters=grl_max_iters,
    )
    return Method(name="cdan", init=init, loss=loss, hparams=hp)

"""MixStyle: mixing instance-level feature statistics across training domains.

Zhou et al., "Domain Generalization with MixStyle", ICLR 2021. Each feature map is
normalised by its own per-channel mean and standard deviation (instance statistics) and
re-styled with a convex combination of its statistics and those of another example::

    MixStyle(x) = σ_mix · (x − μ(x)) / σ(x) + μ_mix,
    μ_mix = λ μ(x) + (1 − λ) μ(x̃),   σ_mix = λ σ(x) + (1 − λ) σ(x̃),   λ ~ Beta(α, α)

with one ``λ`` per example and ``x̃`` the partner example. This follows the official code
(``KaiyangZhou/mixstyle-release``, ``imcls/models/mixstyle.py``, the version with
``mix="random"|"crossdomain"``):

* ``μ`` and ``σ = sqrt(var + eps)`` are taken over the spatial axes with the *unbiased*
  variance (PyTorch's ``x.var``), and are detached (``mu.detach(), sig.detach()``): no
  gradient flows through the statistics, only through the normalised map.
* It is applied to the whole batch with probability ``p`` per call (``random.random() >
  p`` returns the input unchanged), only in training mode.
* ``mode="random"``: the partners are a random permutation of the batch.
* ``mode="crossdomain"``: without ``domain_ids``, the official code's layout: the batch is
  two domains, first half and second half; each half is paired with a random permutation
  of the other half. With ``domain_ids`` (any number of domains, in any order), each
  example's partner is drawn uniformly from the examples of *other* domains, independently
  per example (with replacement, so a partner's statistics may be used more than once; an
  example with no other domain in the batch keeps its own statistics). For two equal
  halves each example's partner has the same distribution as in the official code, which
  additionally makes the partners a permutation.

Feature maps are NHWC here (channels last); the statistics are computed in float32.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

MODES = ("random", "crossdomain")


def instance_stats(x: jax.Array, eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
    """Per-example, per-channel mean and ``sqrt(unbiased var + eps)`` of NHWC maps.

    Returns ``(mu, sig)``, each ``(batch, 1, 1, channels)`` float32, detached.
    """
    xf = x.astype(jnp.float32)
    mu = jnp.mean(xf, axis=(1, 2), keepdims=True)
    var = jnp.var(xf, axis=(1, 2), keepdims=True, ddof=1)
    sig = jnp.sqrt(var + eps)
    return jax.lax.stop_gradient(mu), jax.lax.stop_gradient(sig)


def mix_statistics(x: jax.Array, partner: jax.Array, lam: jax.Array, eps: float = 1e-6):
    """MixStyle's re-styling for given partners and weights (no randomness).

    ``out_i = σ_mix,i · (x_i − μ_i) / σ_i + μ_mix,i`` with ``μ_mix,i = λ_i μ_i + (1 − λ_i)
    μ_{partner_i}`` and likewise ``σ_mix``.

    Args:
      x: NHWC feature maps ``(batch, h, w, c)`` with ``h · w >= 2``.
      partner: int index ``(batch,)`` of each example's partner.
      lam: mixing weights ``(batch,)``.
      eps: added to the variance.

    Returns:
      The re-styled maps, same shape and dtype as ``x``.
    """
    mu, sig = instance_stats(x, eps)
    lam = jnp.reshape(lam, (-1, 1, 1, 1)).astype(jnp.float32)
    mu_mix = lam * mu + (1 - lam) * mu[partner]
    sig_mix = lam * sig + (1 - lam) * sig[partner]
    return ((x.astype(jnp.float32) - mu) / sig * sig_mix + mu_mix).astype(x.dtype)


def mixstyle_partners(
    rng: jax.Array,
    batch: int,
    *,
    mode: Literal["random", "crossdomain"] = "random",
    domain_ids: jax.Array | None = None,
) -> jax.Array:
    """Each example's partner index ``(batch,)`` for :func:`mixstyle` (see the module doc).

    Raises:
      ValueError: for an unknown ``mode``, an odd batch in ``"crossdomain"`` mode without
        ``domain_ids``, or ``domain_ids`` of the wrong shape.
    """
    if mode not in MODES:
        raise ValueError(f"mixstyle: mode must be one of {MODES}, got {mode!r}.")
    if mode == "random":
        return jax.random.permutation(rng, batch)
    if domain_ids is None:
        if batch % 2:
            raise ValueError(
                "mixstyle: mode='crossdomain' without domain_ids treats the two halves of the "
                f"batch as two domains and needs an even batch, got {batch}."
            )
        half = batch // 2
        k1, k2 = jax.random.split(rng)
        return jnp.concatenate(
            [half + jax.random.permutation(k1, half), jax.random.permutation(k2, half)]
        )
    if domain_ids.shape != (batch,):
        raise ValueError(
            f"mixstyle: domain_ids must have shape ({batch},), got {tuple(domain_ids.shape)}."
        )
    other = domain_ids[:, None] != domain_ids[None, :]
    # Uniform random scores, argmax over the allowed columns: a uniform choice among them.
    scores = jnp.where(other, jax.random.uniform(rng, (batch, batch)), -1.0)
    return jnp.where(jnp.any(other, axis=1), jnp.argmax(scores, axis=1), jnp.arange(batch))


def mixstyle(
    x: jax.Array,
    rng: jax.Array,
    *,
    p: float = 0.5,
    alpha: float = 0.1,
    eps: float = 1e-6,
    mode: Literal["random", "crossdomain"] = "random",
    domain_ids: jax.Array | None = None,
) -> jax.Array:
    """MixStyle on NHWC feature maps (training mode; see the module docstring).

    With probability ``p`` the whole batch is re-styled with partners from
    :func:`mixstyle_partners` and ``λ ~ Beta(α, α)`` per example; otherwise ``x`` is returned
    unchanged. Both branches are computed and one is selected, so the function is
    ``jit``-able with a traced key.

    Args:
      x: feature maps ``(batch, h, w, c)``, ``h · w >= 2``.
      rng: a PRNG key.
      p: probability of applying MixStyle to this batch.
      alpha: the Beta parameter (0.1 in the official code's current version; 0.3 in its
        first README).
      eps: added to the variance before the square root.
      mode: ``"random"`` or ``"crossdomain"``.
      domain_ids: optional int domain labels ``(batch,)`` for ``"crossdomain"``.

    Returns:
      Maps of the same shape and dtype.

    Raises:
      ValueError: if ``x`` is not 4-D with at least 2 spatial positions or an argument is
        invalid.
    """
    if x.ndim != 4 or x.shape[1] * x.shape[2] < 2:
        raise ValueError(
            "mixstyle: expected NHWC feature maps with at least 2 spatial positions, got "
            f"shape {tuple(x.shape)}."
        )
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"mixstyle: p must be in [0, 1], got {p!r}.")
    if not alpha > 0:
        raise ValueError(f"mixstyle: alpha must be > 0, got {alpha!r}.")
    k_apply, k_lam, k_partner = jax.random.split(rng, 3)
    partner = mixstyle_partners(k_partner, x.shape[0], mode=mode, domain_ids=domain_ids)
    lam = jax.random.beta(k_lam, alpha, alpha, (x.shape[0],), dtype=jnp.float32)
    mixed = mix_statistics(x, partner, lam, eps)
    return jnp.where(jax.random.uniform(k_apply) < p, mixed, x)


# Folded into the parent stream's key; larger than any draw count a model reaches, so the
# derived key is none of the keys the parent stream hands out.
_SIDE_STREAM_SALT = 2**31 - 0x4D53


def mixstyle_rngs(rngs: nnx.Rngs, rng_collection: str = "dropout") -> nnx.Rngs:
    """Random streams for a backbone's MixStyle layers that leave ``rngs`` untouched.

    ``MixStyle`` (like ``nnx.Dropout``) forks its stream, which draws from it; built from the
    backbone's ``rngs`` that would shift every later initialisation (the classifier head's,
    for one). This derives a separate ``nnx.Rngs`` from the stream's key without drawing, so
    a backbone with MixStyle has exactly the parameters of the one without for the same seed.
    """
    base = rngs[rng_collection].key[...]
    return nnx.Rngs(**{rng_collection: jax.random.fold_in(base, _SIDE_STREAM_SALT)})


class MixStyle(nnx.Module):
    """:func:`mixstyle` as a layer: active in training mode, the identity in eval mode.

    Like ``nnx.Dropout``: it holds a fork of an ``nnx.Rngs`` stream (``rng_collection``,
    ``"dropout"`` by default, so a model seeded for dropout needs nothing new; a missing
    stream falls back to ``default``), and ``model.train()`` / ``model.eval()`` set its
    ``deterministic`` attribute. The stream's key and counter are model state (``rest`` in
    the trainer), advanced on each training call, exactly as dropout's.

    Inside a backbone (``mixstyle_layers`` of ResNet/LeNet) the layer is called without
    ``domain_ids``, so ``mode="crossdomain"`` there is the official two-halves layout: right
    for a batch made of two equal domain batches, not for more domains (use ``"random"``, the
    official code's default, or call :func:`mixstyle` with ``domain_ids``).

    Args:
      p, alpha, eps, mode: as :func:`mixstyle`.
      deterministic: start in eval mode (identity).
      rng_collection: the ``nnx.Rngs`` stream to fork.
      rngs: NNX random streams.
    """

    def __init__(
        self,
        *,
        p: float = 0.5,
        alpha: float = 0.1,
        eps: float = 1e-6,
        mode: Literal["random", "crossdomain"] = "random",
        deterministic: bool = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs,
    ):
        if mode not in MODES:
            raise ValueError(f"MixStyle: mode must be one of {MODES}, got {mode!r}.")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"MixStyle: p must be in [0, 1], got {p!r}.")
        if not alpha > 0:
            raise ValueError(f"MixStyle: alpha must be > 0, got {alpha!r}.")
        self.p, self.alpha, self.eps, self.mode = float(p), float(alpha), float(eps), mode
        self.deterministic = deterministic
        self.rngs = rngs[rng_collection].fork()

    def __call__(
        self,
        x: jax.Array,
        *,
        domain_ids: jax.Array | None = None,
        deterministic: bool | None = None,
    ) -> jax.Array:
        """Re-styles ``x`` in training mode; ``deterministic`` overrides the attribute."""
        if self.deterministic if deterministic is None else deterministic:
            return x
        return mixstyle(
            x,
            self.rngs(),
            p=self.p,
            alpha=self.alpha,
            eps=self.eps,
            mode=self.mode,
            domain_ids=domain_ids,
        )


__all__ = [
    "MODES",
    "MixStyle",
    "instance_stats",
    "mix_statistics",
    "mixstyle",
    "mixstyle_partners",
    "mixstyle_rngs",
]

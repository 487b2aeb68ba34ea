"""Domain-generalisation objectives over several labelled training domains.

Pure functions, no parameters, all ``jax.jit``-able: the IRMv1 penalty, V-REx, GroupDRO's
group weights, inter-domain Mixup and the K-way domain-adversarial cross-entropy of
DANN/CDANN. Each follows DomainBed (Gulrajani & Lopez-Paz, ICLR 2021,
``domainbed/algorithms.py``), the widely reproduced code for these methods; where DomainBed
and the method's paper differ, the docstring says which one is followed. The alignment
penalties over domain pairs (DomainBed's CORAL/MMD) and M³SDA's moment distance are in
:mod:`tljax.losses.dg_alignment`.

Per-domain risks are passed in as arrays (``risks[k]`` = mean cross-entropy on domain
``k``), so a method computes them once and hands them to :func:`vrex_penalty` or
:func:`group_dro_loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _check_logits_labels(logits: jax.Array, labels: jax.Array, what: str, min_batch: int = 1):
    if logits.ndim != 2:
        raise ValueError(
            f"{what}: expected logits (batch, num_classes), got {tuple(logits.shape)}."
        )
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"{what}: expected integer labels of shape ({logits.shape[0]},) to match the logits "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}."
        )
    if logits.shape[0] < min_batch:
        raise ValueError(f"{what}: need a batch of at least {min_batch}, got {logits.shape[0]}.")


def _check_risks(risks: jax.Array, what: str) -> None:
    if risks.ndim != 1 or risks.shape[0] < 1:
        raise ValueError(
            f"{what}: expected per-domain risks of shape (num_domains,), got {tuple(risks.shape)}."
        )


def _mean_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def irm_penalty(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """IRMv1 penalty of one domain (Arjovsky et al., 2019), as DomainBed's ``IRM._irm_penalty``.

    With a dummy classifier scale ``w`` on the logits, the penalty is ``||∇_w R(w·z)||²`` at
    ``w = 1``. DomainBed estimates it without bias by splitting the batch into the even rows
    ``z[0::2]`` and the odd rows ``z[1::2]`` and multiplying the two halves' gradients::

        P = ∂_w CE(w · z[0::2], y[0::2]) · ∂_w CE(w · z[1::2], y[1::2]),   at w = 1

    where ``∂_w CE(w·z, y)|_{w=1} = mean_i(Σ_k softmax(z_i)_k z_ik − z_iy)``. The gradients
    are taken with ``jax.grad`` through the scale (as DomainBed's ``autograd.grad`` with
    ``create_graph=True``), so the penalty is differentiable with respect to the logits. The
    estimate can be negative for a single batch; its expectation is ``||∇_w R||²``.
    DomainBed averages the penalty over domains; so should the caller.

    Args:
      logits: ``(batch, num_classes)`` for one domain, ``batch >= 2``.
      labels: integer labels ``(batch,)``.

    Returns:
      A scalar in the dtype of ``logits``.

    Raises:
      ValueError: if the shapes do not match or the batch has fewer than 2 rows.
    """
    _check_logits_labels(logits, labels, "irm_penalty", min_batch=2)

    def half_grad(z: jax.Array, y: jax.Array) -> jax.Array:
        return jax.grad(lambda w: _mean_ce(w * z, y))(jnp.ones((), z.dtype))

    return half_grad(logits[0::2], labels[0::2]) * half_grad(logits[1::2], labels[1::2])


def vrex_penalty(risks: jax.Array) -> jax.Array:
    """V-REx penalty (Krueger et al., ICML 2021): the variance of the per-domain risks.

    ``P = 1/K Σ_k (R_k − R̄)²`` with ``R̄ = 1/K Σ_k R_k``: the biased variance, as DomainBed's
    ``VREx`` (``((losses - mean) ** 2).mean()``). The V-REx objective is
    ``R̄ + λ · P``.

    Args:
      risks: per-domain risks ``(num_domains,)``.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``risks`` is not 1-D and non-empty.
    """
    _check_risks(risks, "vrex_penalty")
    return jnp.mean((risks - jnp.mean(risks)) ** 2)


def group_dro_weights(q: jax.Array, risks: jax.Array, *, eta: float) -> jax.Array:
    """One GroupDRO step on the group weights (Sagawa et al., ICLR 2020, Algorithm 1).

    ``q_k ← q_k · exp(η · R_k)``, then ``q ← q / Σ_k q_k``, with the risks detached (DomainBed's
    ``GroupDRO`` multiplies by ``exp(η · loss.data)``). Computed as ``softmax(log q + η R)``,
    which is the same value without overflow. DomainBed starts from ``q = 1`` (unnormalised);
    any positive start gives the same weights after the first step.

    Args:
      q: current weights ``(num_domains,)``, non-negative, not all zero.
      risks: per-domain risks ``(num_domains,)``; no gradient flows through them here.
      eta: the step size ``η`` (DomainBed's ``groupdro_eta``), ``>= 0``.

    Returns:
      The new weights ``(num_domains,)`` on the simplex, no gradient.

    Raises:
      ValueError: if the shapes differ or ``eta`` is negative.
    """
    _check_risks(risks, "group_dro_weights")
    if q.shape != risks.shape:
        raise ValueError(
            f"group_dro_weights: q and risks must have the same shape (num_domains,), got "
            f"{tuple(q.shape)} and {tuple(risks.shape)}."
        )
    if not eta >= 0:
        raise ValueError(f"group_dro_weights: eta must be >= 0, got {eta!r}.")
    q = jax.lax.stop_gradient(q)
    risks = jax.lax.stop_gradient(risks)
    return jax.nn.softmax(jnp.log(q) + jnp.asarray(eta, risks.dtype) * risks)


def group_dro_loss(q: jax.Array, risks: jax.Array) -> jax.Array:
    """GroupDRO's robust loss ``Σ_k q_k R_k`` with the weights detached.

    DomainBed first updates ``q`` with the current risks (:func:`group_dro_weights`), then
    minimises ``torch.dot(losses, q)``; pass the updated ``q``.

    Args:
      q: group weights ``(num_domains,)``; no gradient flows through them.
      risks: per-domain risks ``(num_domains,)``.

    Returns:
      A scalar.

    Raises:
      ValueError: if the shapes differ.
    """
    _check_risks(risks, "group_dro_loss")
    if q.shape != risks.shape:
        raise ValueError(
            f"group_dro_loss: q and risks must have the same shape (num_domains,), got "
            f"{tuple(q.shape)} and {tuple(risks.shape)}."
        )
    return jnp.sum(jax.lax.stop_gradient(q).astype(risks.dtype) * risks)


def mixup_lambda(rng: jax.Array, alpha: float, shape: tuple[int, ...] = ()) -> jax.Array:
    """``λ ~ Beta(α, α)`` (DomainBed's ``np.random.beta(mixup_alpha, mixup_alpha)``), float32.

    Args:
      rng: a PRNG key.
      alpha: the Beta parameter ``α > 0`` (DomainBed's ``mixup_alpha``, default 0.2).
      shape: the shape of the sample; ``()`` is one ``λ`` per domain pair, as DomainBed.

    Raises:
      ValueError: if ``alpha <= 0``.
    """
    if not alpha > 0:
        raise ValueError(f"mixup_lambda: alpha must be > 0, got {alpha!r}.")
    return jax.random.beta(rng, alpha, alpha, shape, dtype=jnp.float32)


def mix_inputs(x_i: jax.Array, x_j: jax.Array, lam: jax.Array | float) -> jax.Array:
    """Inter-domain Mixup of two batches (Yan et al., 2020; DomainBed's ``Mixup``).

    ``x = λ x_i + (1 − λ) x_j``, elementwise; ``λ`` is a scalar or broadcasts against the
    batch. DomainBed truncates both batches to the shorter one; here they must have the same
    shape (static shapes under ``jit``).

    Raises:
      ValueError: if the shapes differ.
    """
    if x_i.shape != x_j.shape:
        raise ValueError(
            f"mix_inputs: the two batches must have the same shape, got {tuple(x_i.shape)} and "
            f"{tuple(x_j.shape)}."
        )
    lam = jnp.asarray(lam, x_i.dtype)
    return lam * x_i + (1 - lam) * x_j


def mixup_loss(
    logits: jax.Array, y_i: jax.Array, y_j: jax.Array, lam: jax.Array | float
) -> jax.Array:
    """Mixup's loss ``λ · CE(z, y_i) + (1 − λ) · CE(z, y_j)`` on the mixed batch's logits.

    Both cross-entropies are batch means, as DomainBed's ``Mixup.update``; DomainBed then
    averages this over the domain pairs of :func:`domain_pairs`.

    Args:
      logits: ``(batch, num_classes)`` of the mixed inputs.
      y_i, y_j: integer labels ``(batch,)`` of the two mixed batches.
      lam: the mixing weight used in :func:`mix_inputs`.

    Returns:
      A scalar.

    Raises:
      ValueError: if the shapes do not match.
    """
    _check_logits_labels(logits, y_i, "mixup_loss")
    _check_logits_labels(logits, y_j, "mixup_loss")
    lam = jnp.asarray(lam, logits.dtype)
    return lam * _mean_ce(logits, y_i) + (1 - lam) * _mean_ce(logits, y_j)


def domain_pairs(num_domains: int, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Random pairs of domains, as DomainBed's ``misc.random_pairs_of_minibatches``.

    A random permutation ``π`` of the domains; pair ``k`` is ``(π_k, π_{(k+1) mod K})``, so
    every domain appears once on each side. With one domain the only pair is ``(0, 0)``.

    Args:
      num_domains: ``K >= 1`` (static).
      rng: a PRNG key.

    Returns:
      ``(first, second)``, two int32 index arrays of shape ``(K,)``.

    Raises:
      ValueError: if ``num_domains`` is not a positive int.
    """
    if not isinstance(num_domains, int) or num_domains < 1:
        raise ValueError(f"domain_pairs: num_domains must be a positive int, got {num_domains!r}.")
    perm = jax.random.permutation(rng, num_domains).astype(jnp.int32)
    return perm, jnp.roll(perm, -1)


def domain_adversarial_ce(
    disc_logits: jax.Array, domain_ids: jax.Array, *, weights: jax.Array | None = None
) -> jax.Array:
    """K-way cross-entropy of a domain discriminator (DANN/CDANN over K domains).

    Without weights: ``mean_i CE(d_i, k_i)`` (DomainBed's ``F.cross_entropy(disc_out,
    disc_labels)``). With weights: ``Σ_i w_i CE(d_i, k_i)``, a *sum*, as DomainBed's
    class-balanced CDANN (``(weights * disc_loss).sum()``); the weights of
    :func:`cdann_class_weights` sum to 1 when every class is present, so this is then a
    weighted mean. The method maximises this term for the featurizer (gradient reversal or
    DomainBed's ``-disc_loss`` in the generator step).

    Args:
      disc_logits: ``(batch, num_domains)``.
      domain_ids: integer domain labels ``(batch,)``.
      weights: optional per-example weights ``(batch,)``; no gradient flows through them.

    Returns:
      A scalar.

    Raises:
      ValueError: if the shapes do not match.
    """
    _check_logits_labels(disc_logits, domain_ids, "domain_adversarial_ce")
    ce = optax.softmax_cross_entropy_with_integer_labels(disc_logits, domain_ids)
    if weights is None:
        return jnp.mean(ce)
    if weights.shape != ce.shape:
        raise ValueError(
            f"domain_adversarial_ce: weights must have shape {tuple(ce.shape)}, got "
            f"{tuple(weights.shape)}."
        )
    return jnp.sum(jax.lax.stop_gradient(weights).astype(ce.dtype) * ce)


def cdann_class_weights(
    labels: jax.Array,
    domain_ids: jax.Array,
    num_classes: int,
    num_domains: int,
    *,
    per_domain: bool = False,
) -> jax.Array:
    """Class-balancing weights of CDANN's discriminator loss.

    * ``per_domain=False`` (default), DomainBed's ``AbstractDANN`` with ``class_balance``:
      ``w_i = 1 / (n_{y_i} · C)`` with ``n_c`` the count of class ``c`` in the whole batch
      (all domains together) and ``C = num_classes``. DomainBed's ``F.one_hot(all_y)``
      infers ``C`` as ``max(y) + 1`` of the batch; a static ``num_classes`` differs only when
      the last classes are missing from the batch. ``Σ_i w_i = (#classes present) / C``.
    * ``per_domain=True``, the paper's class-prior normalisation (Li et al., ECCV 2018,
      CIDDG: each domain's loss re-weighted by ``1 / P_k(y)``): ``w_i = 1 / (n_{k_i, y_i} ·
      C · K)`` with ``n_{k,c}`` the count of class ``c`` in domain ``k``; the weights sum to 1
      when every class occurs in every domain.

    Args:
      labels: integer class labels ``(batch,)``.
      domain_ids: integer domain labels ``(batch,)``.
      num_classes: ``C`` (static).
      num_domains: ``K`` (static).
      per_domain: count classes per domain instead of over the batch.

    Returns:
      float32 weights ``(batch,)``, no gradient.

    Raises:
      ValueError: if the shapes differ or a count is not a positive int.
    """
    for name, value in (("num_classes", num_classes), ("num_domains", num_domains)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"cdann_class_weights: {name} must be a positive int, got {value!r}.")
    if labels.ndim != 1 or labels.shape != domain_ids.shape:
        raise ValueError(
            "cdann_class_weights: labels and domain_ids must be 1-D of the same length, got "
            f"{tuple(labels.shape)} and {tuple(domain_ids.shape)}."
        )
    if per_domain:
        cell = domain_ids * num_classes + labels
        counts = jnp.zeros(num_domains * num_classes, jnp.float32).at[cell].add(1.0)
        return 1.0 / (counts[cell] * (num_classes * num_domains))
    counts = jnp.zeros(num_classes, jnp.float32).at[labels].add(1.0)
    return 1.0 / (counts[labels] * num_classes)

"""Feature alignment across several domains: DomainBed's CORAL/MMD pairs and M³SDA moments.

* :func:`pairwise_penalty` averages a two-domain penalty over all domain pairs ``i < j``, as
  DomainBed's ``AbstractMMD.update`` (Gulrajani & Lopez-Paz, ICLR 2021).
* :func:`coral_penalty` and :func:`gaussian_mmd_penalty` are DomainBed's two ``mmd`` kernels
  (``CORAL`` and ``MMD`` algorithms). They differ in scale from :func:`tljax.losses.coral.coral`
  and :func:`tljax.losses.mmd.mk_mmd`, which follow Deep CORAL and DAN/TLlib.
* :func:`m3sda_moment_distance` is M³SDA's moment distance over several sources and one
  target (Peng et al., ICCV 2019).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp

DOMAINBED_GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _check_features(x: jax.Array, y: jax.Array, what: str, min_rows: int = 1) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{what}: expected 2-D features (batch, d) with the same d, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[0] < min_rows or y.shape[0] < min_rows:
        raise ValueError(
            f"{what}: need at least {min_rows} rows per batch, got {x.shape[0]} and {y.shape[0]}."
        )


def pairwise_penalty(
    features: Sequence[jax.Array], penalty_fn: Callable[[jax.Array, jax.Array], jax.Array]
) -> jax.Array:
    """Mean of ``penalty_fn(f_i, f_j)`` over all domain pairs ``i < j``.

    DomainBed's ``AbstractMMD.update``: the pair penalties are summed and divided by
    ``K (K − 1) / 2``; with a single domain the penalty is 0. The batches may differ in size
    if ``penalty_fn`` allows it (both penalties here do).

    Args:
      features: ``K`` feature batches, one per domain (a Python sequence, unrolled at trace
        time).
      penalty_fn: a two-domain penalty, e.g. :func:`coral_penalty` or
        :func:`gaussian_mmd_penalty` (bind options with ``functools.partial``).

    Returns:
      A scalar.

    Raises:
      ValueError: if ``features`` is empty.
    """
    features = list(features)
    if not features:
        raise ValueError("pairwise_penalty: need at least one domain's features, got none.")
    pairs = list(itertools.combinations(range(len(features)), 2))
    if not pairs:
        return jnp.zeros((), features[0].dtype)
    total = sum(penalty_fn(features[i], features[j]) for i, j in pairs)
    return total / len(pairs)


def coral_penalty(x: jax.Array, y: jax.Array) -> jax.Array:
    """DomainBed's CORAL penalty: ``mean((μ_x − μ_y)²) + mean((C_x − C_y)²)``.

    The means are over the ``d`` features and the ``d²`` covariance entries; the covariances
    are unbiased (``/(n − 1)``). This is DomainBed's ``AbstractMMD.mmd`` with
    ``kernel_type="mean_cov"``. Deep CORAL (:func:`tljax.losses.coral.coral`, Sun & Saenko
    2016) has no mean term and divides ``||C_x − C_y||_F²`` by ``4d²`` instead of ``d²``, so
    its covariance term is a quarter of this one; DomainBed's ``mmd_gamma`` (default 1)
    refers to this scale.

    Args:
      x, y: features ``(n_x, d)`` and ``(n_y, d)``, each with at least 2 rows.

    Returns:
      A scalar.

    Raises:
      ValueError: if the shapes are not 2-D with the same ``d`` or a batch has < 2 rows.
    """
    _check_features(x, y, "coral_penalty", min_rows=2)

    def stats(f):
        mean = jnp.mean(f, axis=0)
        centred = f - mean
        return mean, centred.T @ centred / (f.shape[0] - 1)

    (mean_x, cov_x), (mean_y, cov_y) = stats(x), stats(y)
    return jnp.mean((mean_x - mean_y) ** 2) + jnp.mean((cov_x - cov_y) ** 2)


def _sq_dists(x: jax.Array, y: jax.Array, same: bool) -> jax.Array:
    """DomainBed's ``my_cdist``: ``||x||² + ||y||² − 2 x·y`` clamped below at 1e-30."""
    d2 = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * (x @ y.T)
    d2 = jnp.maximum(d2, 1e-30)
    if same:
        # A point's distance to itself is exactly 0 (kernel value 1); the Gram form leaves
        # rounding noise there that the large gammas (up to 1000) would amplify.
        d2 = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, d2)
    return d2


def gaussian_mmd_penalty(
    x: jax.Array, y: jax.Array, gammas: Sequence[float] = DOMAINBED_GAMMAS
) -> jax.Array:
    """DomainBed's Gaussian MMD: ``mean K(x,x) + mean K(y,y) − 2 mean K(x,y)``.

    ``K(a, b) = Σ_γ exp(−γ ||a − b||²)`` over the fixed ``gammas`` (DomainBed's
    ``AbstractMMD.gaussian_kernel``); the means include the diagonal (the biased V-statistic).
    Squared distances are DomainBed's ``my_cdist`` (Gram form, clamped at 1e-30), except that
    the diagonal of ``K(x,x)`` and ``K(y,y)`` uses the exact distance 0 (see ``_sq_dists``).
    Unlike :func:`tljax.losses.mmd.mk_mmd`, the bandwidths do not depend on the batch.

    Args:
      x, y: features ``(n_x, d)`` and ``(n_y, d)``; the batch sizes may differ.
      gammas: the kernel precisions ``γ``, each ``> 0``.

    Returns:
      A scalar (``>= 0`` up to rounding; exactly 0 for ``x is y``).

    Raises:
      ValueError: if the shapes are not 2-D with the same ``d`` or ``gammas`` is empty or has
        a non-positive entry.
    """
    _check_features(x, y, "gaussian_mmd_penalty")
    gammas = tuple(float(g) for g in gammas)
    if not gammas or min(gammas) <= 0:
        raise ValueError(f"gaussian_mmd_penalty: gammas must be non-empty and > 0, got {gammas}.")

    def kernel_mean(a, b, same):
        d2 = _sq_dists(a, b, same)
        return sum(jnp.mean(jnp.exp(-g * d2)) for g in gammas)

    return kernel_mean(x, x, True) + kernel_mean(y, y, True) - 2.0 * kernel_mean(x, y, False)


def _norm(v: jax.Array) -> jax.Array:
    """Euclidean norm with a zero (not NaN) gradient at ``v = 0``."""
    sq = jnp.sum(v * v)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _moments(f: jax.Array, k: int) -> list[jax.Array]:
    mean = jnp.mean(f, axis=0)
    centred = f - mean
    return [mean] + [jnp.mean(centred**order, axis=0) for order in range(2, k + 1)]


def m3sda_moment_distance(
    sources: Sequence[jax.Array],
    target: jax.Array,
    *,
    k: int = 2,
    normalization: Literal["code", "paper"] = "code",
) -> jax.Array:
    """M³SDA's moment distance between ``N`` source domains and a target (Peng et al., 2019).

    For each order ``o = 1..k`` let ``m_o(X)`` be the per-feature moment: the mean for
    ``o = 1`` and the central moment ``mean((X − mean X)^o)`` for ``o >= 2`` (the published
    code, ``M3SDA/code_MSDA_digit/metric/msda.py``, subtracts each domain's mean before
    ``k_moment``). With ``D_o(A, B) = ||m_o(A) − m_o(B)||₂``, ``S_o = Σ_i D_o(X_i, X_T)`` and
    ``P_o = Σ_{i<j} D_o(X_i, X_j)``:

    * ``normalization="code"`` (default): ``Σ_o (S_o + P_o) / 6``, the published code's plain
      sum divided by its constant 6 (``reg_info/6``, written for 4 sources, ``C(4, 2) = 6``;
      kept constant for any ``N`` as the code's multi-source re-implementations do): the
      scale the code's trade-off weight refers to.
    * ``normalization="paper"``: the averages of eq. 1, ``Σ_o (S_o / N + P_o / C(N, 2))``
      (the pair term is absent for ``N = 1``), still with the code's central moments (eq. 1
      writes raw moments ``E(X^o)``; the two agree for ``o = 1``).

    Where this departs from the code: the code's first-order term is the Frobenius distance
    between the *centred batches* (``euclidean(output_s1 - s1_mean, output_t - t_mean)``),
    which pairs example ``i`` of one domain with example ``i`` of another and needs equal
    batch sizes; here it is the distance between the means, the first moment of eq. 1. The
    code also passes its fourth source as the raw, uncentred batch (no moment taken) and
    counts the (4, 2) pair twice instead of (4, 3); every domain is treated alike here. The
    norm has a zero gradient at 0 (the code's ``sqrt`` has an infinite one), so equal domains
    give a finite gradient.

    Args:
      sources: ``N >= 1`` source feature batches ``(n_i, d)``.
      target: target features ``(n_t, d)``.
      k: the highest moment order, ``>= 1`` (the code's ``belta_moment``); ``k = 2`` matches
        means and variances.
      normalization: ``"code"`` or ``"paper"``.

    Returns:
      A scalar.

    Raises:
      ValueError: if there are no sources, the shapes disagree, or ``k``/``normalization`` is
        invalid.
    """
    sources = list(sources)
    if not sources:
        raise ValueError("m3sda_moment_distance: need at least one source domain, got none.")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"m3sda_moment_distance: k must be an int >= 1, got {k!r}.")
    if normalization not in ("code", "paper"):
        raise ValueError(
            f"m3sda_moment_distance: normalization must be 'code' or 'paper', got "
            f"{normalization!r}."
        )
    for s in sources:
        _check_features(s, target, "m3sda_moment_distance")
    n = len(sources)
    src_moments = [_moments(s, k) for s in sources]
    tgt_moments = _moments(target, k)
    pairs = list(itertools.combinations(range(n), 2))
    total = jnp.zeros((), target.dtype)
    for o in range(k):
        to_target = sum(_norm(m[o] - tgt_moments[o]) for m in src_moments)
        between = sum((_norm(src_moments[i][o] - src_moments[j][o]) for i, j in pairs), 0.0)
        if normalization == "code":
            total = total + (to_target + between) / 6.0
        else:
            total = total + to_target / n + (between / len(pairs) if pairs else 0.0)
    return total

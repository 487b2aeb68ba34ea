"""Maximum mean discrepancy: multi-kernel MMD (DAN) and joint MMD (JAN).

Kernels follow the widely reproduced code (Transfer-Learning-Library, TLlib): a family of
Gaussian kernels whose bandwidths are set from the batch itself, with no gradient through the
bandwidth. With ``kernel_mul=2`` and ``num_kernels=5`` the family is exactly TLlib's
``[GaussianKernel(alpha=2 ** k) for k in range(-3, 2)]``: TLlib's kernel is
``exp(-d² / (2 α m))`` with ``m`` the mean pairwise squared distance, i.e. ``exp(-d² / h)`` with
``h = 2α m ∈ {m/4, m/2, m, 2m, 4m}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def _check_pair(x: jax.Array, y: jax.Array, what: str) -> None:
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(
            f"{what}: expected batched features of shape (batch, ...), got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape != y.shape:
        raise ValueError(
            f"{what}: source and target batches must have the same shape (equal batch size "
            f"and feature size), got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[0] < 2:
        raise ValueError(f"{what}: need a batch size of at least 2 per domain, got {x.shape[0]}.")


def _check_kernel_args(kernel_mul: float, num_kernels: int) -> None:
    if not isinstance(num_kernels, int) or num_kernels < 1:
        raise ValueError(f"num_kernels must be a positive int, got {num_kernels!r}.")
    if not kernel_mul > 0:
        raise ValueError(f"kernel_mul must be > 0, got {kernel_mul!r}.")


def _bandwidths(z: jax.Array, kernel_mul: float, num_kernels: int) -> jax.Array:
    """Bandwidths ``h_k = m · mul^(k − K//2)``, ``m`` = mean pairwise squared distance, detached."""
    z = jax.lax.stop_gradient(z)
    # mean_{i,j} ||z_i − z_j||² (diagonal included) = 2 · mean_i ||z_i − z̄||²: O(N d), stable.
    centred = z - jnp.mean(z, axis=0, keepdims=True)
    base = 2.0 * jnp.mean(jnp.sum(centred * centred, axis=-1))
    # A batch of identical points has base 0 and all distances 0: any bandwidth gives 1.
    base = jnp.where(base > 0, base, 1.0)
    exponents = jnp.arange(num_kernels, dtype=z.dtype) - num_kernels // 2
    return base * jnp.asarray(kernel_mul, z.dtype) ** exponents


def _kernel(d2: jax.Array, z: jax.Array, kernel_mul: float, num_kernels: int, sigma) -> jax.Array:
    """Sum of Gaussian kernels evaluated at squared distances ``d2`` (any shape)."""
    if sigma is not None:
        if not sigma > 0:
            raise ValueError(f"a fixed kernel sigma must be > 0 or None, got {sigma!r}.")
        return jnp.exp(-d2 / (2.0 * jnp.asarray(sigma, d2.dtype) ** 2))
    h = _bandwidths(z, kernel_mul, num_kernels)
    return jnp.sum(jnp.exp(-d2[..., None] / h), axis=-1)


def _pairwise_sq_dists(z: jax.Array) -> jax.Array:
    sq = jnp.sum(z * z, axis=-1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)
    # The diagonal is exactly zero; the Gram form leaves rounding noise there.
    return jnp.where(jnp.eye(z.shape[0], dtype=bool), 0.0, d2)


def _concat(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.concatenate([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)], axis=0)


def gaussian_kernels(
    x: jax.Array,
    y: jax.Array,
    *,
    kernel_mul: float = 2.0,
    num_kernels: int = 5,
    sigma: float | None = None,
) -> jax.Array:
    """Sum-of-Gaussians kernel matrix over the concatenated batch ``z = [x; y]``.

    ``K_ij = Σ_k exp(−||z_i − z_j||² / h_k)`` with ``h_k = m · kernel_mul^(k − num_kernels//2)``,
    ``k = 0..num_kernels−1``, and ``m = mean_{i,j} ||z_i − z_j||²`` over all ``(2n)²`` pairs
    (diagonal included, as TLlib) computed under ``jax.lax.stop_gradient``.

    Args:
      x: source features, shape ``(n, ...)``; trailing axes are flattened.
      y: target features, same shape as ``x``.
      kernel_mul: ratio between consecutive bandwidths.
      num_kernels: number of kernels in the family.
      sigma: if given, use the single fixed kernel ``exp(−d² / (2σ²))`` instead of the family
        (TLlib's ``GaussianKernel(sigma=σ, track_running_stats=False)``).

    Returns:
      The ``(2n, 2n)`` kernel matrix; rows/columns ``0..n−1`` are ``x``, ``n..2n−1`` are ``y``.

    Raises:
      ValueError: if the shapes differ, the batch is smaller than 2, or an argument is invalid.
    """
    _check_pair(x, y, "gaussian_kernels")
    _check_kernel_args(kernel_mul, num_kernels)
    z = _concat(x, y)
    return _kernel(_pairwise_sq_dists(z), z, kernel_mul, num_kernels, sigma)


def _linear_pair_kernel(z: jax.Array, n: int, kernel_mul, num_kernels, sigma) -> jax.Array:
    """Kernel values for TLlib's linear estimator, shape ``(4, n)``: ss, tt, st, ts pairs."""
    s, t = z[:n], z[n:]
    s_next, t_next = jnp.roll(s, -1, axis=0), jnp.roll(t, -1, axis=0)
    d2 = jnp.stack(
        [
            jnp.sum((s - s_next) ** 2, axis=-1),  # k(s_i, s_{i+1})
            jnp.sum((t - t_next) ** 2, axis=-1),  # k(t_i, t_{i+1})
            jnp.sum((s - t_next) ** 2, axis=-1),  # k(s_i, t_{i+1})
            jnp.sum((s_next - t) ** 2, axis=-1),  # k(s_{i+1}, t_i)
        ]
    )
    return _kernel(d2, z, kernel_mul, num_kernels, sigma)


def _estimate(kernel: jax.Array, n: int, linear: bool, unbiased: bool) -> jax.Array:
    if linear:
        ss, tt, st, ts = kernel
        return jnp.mean(ss + tt - st - ts)
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    if unbiased:
        within = (jnp.sum(k_ss) - jnp.trace(k_ss) + jnp.sum(k_tt) - jnp.trace(k_tt)) / (n * (n - 1))
    else:
        within = jnp.mean(k_ss) + jnp.mean(k_tt)
    return within - 2.0 * jnp.mean(k_st)


def mk_mmd(
    x: jax.Array,
    y: jax.Array,
    *,
    kernel_mul: float = 2.0,
    num_kernels: int = 5,
    linear: bool = False,
    unbiased: bool = True,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> jax.Array:
    """Multi-kernel MMD² between a source and a target batch (DAN, Long et al., ICML 2015).

    With ``K`` the kernel of :func:`gaussian_kernels` and ``n`` samples per domain:

    * quadratic, ``unbiased=True`` (default; Gretton et al., JMLR 2012, eq. 3, ``MMD²_u``)::

        1/(n(n−1)) Σ_{i≠j} [k(s_i, s_j) + k(t_i, t_j)] − 2/n² Σ_{i,j} k(s_i, t_j)

      This is the estimator TLlib's ``MultipleKernelMaximumMeanDiscrepancy`` computes. TLlib
      adds the constant ``2/(n−1)`` to it; we leave the constant out (it changes logged values,
      not gradients), so compare logged losses with TLlib's minus ``2/(n−1)``.
    * quadratic, ``unbiased=False`` (the biased ``MMD²_b``, Gretton eq. 2): means over all
      pairs including ``i = j``. It is ≥ 0 and exactly 0 for identical batches.
    * ``linear=True``: TLlib's linear-time estimator over cyclically consecutive pairs
      ``1/n Σ_i [k(s_i, s_{i+1}) + k(t_i, t_{i+1}) − k(s_i, t_{i+1}) − k(s_{i+1}, t_i)]``
      (indices mod ``n``). The DAN paper / Gretton use disjoint quad-tuples instead; we follow
      TLlib. ``unbiased`` is ignored. TLlib's DAN example uses ``linear=True`` by default.

    Bandwidths come from the batch with no gradient through them (see module docstring).

    Args:
      x: source features, shape ``(n, ...)``.
      y: target features, same shape as ``x``.
      kernel_mul: ratio between consecutive bandwidths.
      num_kernels: number of Gaussian kernels.
      linear: use the linear-time estimator.
      unbiased: for the quadratic estimator, drop the ``i = j`` terms of the within-domain sums.
      source_weights, target_weights: optional per-example weights ``(n,)`` of either batch
        (see :func:`jmmd`); ``None`` (default) is the unweighted estimator, bit for bit.

    Returns:
      A scalar.

    Raises:
      ValueError: if ``x`` and ``y`` differ in shape, the batch is smaller than 2, or an
        argument is invalid.
    """
    return jmmd(
        [x],
        [y],
        kernel_mul=kernel_mul,
        num_kernels=num_kernels,
        linear=linear,
        unbiased=unbiased,
        source_weights=source_weights,
        target_weights=target_weights,
    )


def jmmd(
    xs: Sequence[jax.Array],
    ys: Sequence[jax.Array],
    *,
    kernel_mul: float = 2.0,
    num_kernels: int = 5,
    sigmas: Sequence[float | None] | None = None,
    linear: bool = False,
    unbiased: bool = True,
    source_weights: jax.Array | None = None,
    target_weights: jax.Array | None = None,
) -> jax.Array:
    """Joint MMD² over several layers (JAN, Long et al., ICML 2017).

    The joint kernel is the elementwise product of the per-layer kernels,
    ``k(z_i, z_j) = Π_l k^l(z_i^l, z_j^l)``, plugged into the estimator of :func:`mk_mmd`
    (same ``linear``/``unbiased`` semantics; TLlib's ``JointMultipleKernelMaximumMeanDiscrepancy``
    likewise shares DAN's index matrix). TLlib's JAN recipe is features with the batch-set
    kernel family and softmax outputs with one fixed kernel of σ = 0.92:
    ``jmmd([f_s, p_s], [f_t, p_t], sigmas=(None, 0.92))``, with the quadratic estimator
    (TLlib's JAN example defaults to ``linear=False``). The adversarial θ-variant of JAN is
    a method-level network, not part of this function.

    Args:
      xs: per-layer source activations, each ``(n, ...)``.
      ys: per-layer target activations, matching ``xs`` in length and shapes.
      kernel_mul: ratio between consecutive bandwidths of the batch-set kernel families.
      num_kernels: number of kernels per batch-set family.
      sigmas: per layer, ``None`` for the batch-set family or a float σ for a single fixed
        kernel ``exp(−d²/(2σ²))``. ``None`` means every layer uses the family.
      linear: use TLlib's linear-time estimator.
      unbiased: for the quadratic estimator, drop the ``i = j`` within-domain terms.
      source_weights, target_weights: optional non-negative per-example weights ``(n,)``
        (e.g. PADA's class weights of the source labels). Each is normalised to sum to one,
        ``ŵ = w / Σw``, giving the weighted mean embeddings ``Σ ŵ_i φ(z_i)`` (a missing one
        is uniform): biased ``Σ_ij ŵs_i ŵs_j k(s_i,s_j) + Σ_ij ŵt_i ŵt_j k(t_i,t_j) −
        2 Σ_ij ŵs_i ŵt_j k(s_i,t_j)``; unbiased, each within-domain sum over ``i ≠ j``
        divided by ``1 − Σ ŵ_i²`` (with uniform weights both are exactly the unweighted
        estimators). Quadratic estimator only. ``None`` for both (default) runs the
        unweighted code unchanged.

    Returns:
      A scalar.

    Raises:
      ValueError: on mismatched layer counts, shapes or batch sizes, or invalid arguments.
    """
    xs, ys = list(xs), list(ys)
    if not xs or len(xs) != len(ys):
        raise ValueError(
            f"jmmd: need the same non-zero number of source and target layers, got {len(xs)} "
            f"and {len(ys)}."
        )
    if sigmas is None:
        sigmas = [None] * len(xs)
    sigmas = list(sigmas)
    if len(sigmas) != len(xs):
        raise ValueError(
            f"jmmd: got {len(sigmas)} sigmas for {len(xs)} layers; need one per layer."
        )
    _check_kernel_args(kernel_mul, num_kernels)
    n = xs[0].shape[0]
    for layer, (x, y, sigma) in enumerate(zip(xs, ys, sigmas, strict=True)):
        _check_pair(x, y, f"jmmd layer {layer}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"jmmd: sigmas[{layer}] must be > 0 or None, got {sigma!r}.")
        if x.shape[0] != n:
            raise ValueError(
                f"jmmd: every layer needs the same batch size; layer 0 has {n}, layer {layer} "
                f"has {x.shape[0]}."
            )
    joint = None
    for x, y, sigma in zip(xs, ys, sigmas, strict=True):
        z = _concat(x, y)
        if linear:
            k = _linear_pair_kernel(z, n, kernel_mul, num_kernels, sigma)
        else:
            k = _kernel(_pairwise_sq_dists(z), z, kernel_mul, num_kernels, sigma)
        joint = k if joint is None else joint * k
    if source_weights is None and target_weights is None:
        return _estimate(joint, n, linear, unbiased)
    if linear:
        raise ValueError("jmmd: per-example weights need the quadratic estimator (linear=False).")
    ws = _normalised_weights(source_weights, n, "source_weights")
    wt = _normalised_weights(target_weights, n, "target_weights")
    return _weighted_estimate(joint, ws, wt, unbiased)


def _normalised_weights(w, n: int, what: str) -> jax.Array:
    if w is None:
        return jnp.full((n,), 1.0 / n, jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    if w.shape != (n,):
        raise ValueError(f"jmmd: {what} must have shape ({n},), got {w.shape}.")
    return w / jnp.maximum(jnp.sum(w), 1e-12)


def _weighted_estimate(kernel: jax.Array, ws: jax.Array, wt: jax.Array, unbiased: bool):
    n = ws.shape[0]
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]

    def within(k, w):
        total = w @ k @ w
        if not unbiased:
            return total
        diag = jnp.sum(w * w * jnp.diagonal(k))
        return (total - diag) / jnp.maximum(1.0 - jnp.sum(w * w), 1e-12)

    return within(k_ss, ws) + within(k_tt, wt) - 2.0 * (ws @ k_st @ wt)

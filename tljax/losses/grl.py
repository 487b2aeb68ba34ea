"""Gradient reversal (Ganin & Lempitsky, 2015) and its warm-start coefficient schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def gradient_reversal(x: jax.Array, coeff: jax.Array) -> jax.Array:
    """Identity in the forward pass; multiplies the incoming gradient by ``-coeff``.

    Args:
      x: any array.
      coeff: scalar λ ≥ 0; the backward pass returns ``-λ · g``. It receives no gradient.

    Returns:
      ``x`` unchanged.
    """
    del coeff
    return x


def _grl_fwd(x, coeff):
    return x, coeff


def _grl_bwd(coeff, g):
    coeff = jnp.asarray(coeff)
    return (-coeff.astype(g.dtype) * g, jnp.zeros_like(coeff))


gradient_reversal.defvjp(_grl_fwd, _grl_bwd)


def warm_start_coefficient(
    step: jax.Array | int,
    *,
    lo: float = 0.0,
    hi: float = 1.0,
    alpha: float = 1.0,
    max_iters: float = 1000.0,
) -> jax.Array:
    """The GRL coefficient ``λ(i) = 2(hi−lo)/(1+exp(−α i/N)) − (hi−lo) + lo``.

    Computed as the identical ``(hi−lo)·tanh(α i/(2N)) + lo``: the sigmoid form subtracts
    two numbers close to ``hi−lo`` at small ``i`` and, in float32, loses ~1e-4 of the
    value's relative precision in the first steps; ``tanh`` keeps it to float32 rounding.

    This is the schedule of the widely reproduced DANN code (TLlib's
    ``WarmStartGradientReverseLayer``): it rises from ``lo`` at step 0 towards ``hi``.
    The DANN paper writes the same curve as ``2/(1+exp(−10 p)) − 1`` with ``p`` the
    training progress, i.e. ``alpha=10`` and ``max_iters`` the total number of steps.

    Args:
      step: the current iteration ``i`` (may be traced).
      lo: value at step 0.
      hi: limit as ``i → ∞``.
      alpha: steepness α.
      max_iters: the scale N in iterations.

    Returns:
      A float32 scalar.
    """
    i = jnp.asarray(step, jnp.float32)
    # 2s/(1+exp(-x)) - s = s·tanh(x/2), without the cancellation near x = 0.
    return (hi - lo) * jnp.tanh(alpha * i / (2.0 * max_iters)) + lo

"""A multilayer perceptron backbone for vector inputs (the two-moons toy)."""

from __future__ import annotations

import math

import jax
from flax import nnx


class MLP(nnx.Module):
    """``Linear → ReLU`` blocks; returns ``{"features": (n, hidden[-1])}``.

    Args:
      input_shape: shape of one example; flattened.
      hidden: widths of the hidden layers.
      rngs: NNX random streams.
    """

    def __init__(self, input_shape, *, hidden=(64, 64), rngs: nnx.Rngs):
        if not hidden:
            raise ValueError("MLP needs at least one hidden layer, got hidden=().")
        dims = [math.prod(input_shape), *hidden]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.feature_dim = dims[-1]

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return {"features": x}


def mlp(input_shape, *, rngs: nnx.Rngs, hidden=(64, 64)) -> MLP:
    """Factory used by the model registry."""
    return MLP(tuple(input_shape), hidden=tuple(hidden), rngs=rngs)

"""The method interface shared by all transfer methods.

A method is a ``Method`` tuple of pure functions, built by a factory that captures its
hyperparameters (optax style):

* ``init(rngs, info) -> nnx.Module | None`` builds the method's own networks (a domain
  discriminator for DANN, nothing for MMD or CORAL). Their parameters are trained by the
  same optimizer as the model and live under ``method/`` in the parameter tree.
* ``loss(module, *, src, tgt, rng, step) -> (scalar, metrics)`` is the adaptation loss.
  ``src`` and ``tgt`` are :class:`Outputs` of the model on the source and the target
  batch. It is called inside the jit-compiled train step, in training mode, with the
  method's module already merged, so BatchNorm statistics of the method's networks are
  updated as usual. Arguments are keyword-only so source and target can't be swapped.
  It never sees target labels.
* ``train_step`` (optional) replaces the trainer's default step for methods that need
  several updates per iteration (MCD, ADDA, mean teacher); it is built from the same
  pieces. ``None`` for single-objective methods.

The trainer minimises ``task_loss(source) + weight * loss(...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import nnx


class ModelInfo(NamedTuple):
    """What a method may need to know about the model to build its own networks."""

    feature_dim: int
    num_classes: int


class Outputs(NamedTuple):
    """The model's outputs on one domain's batch."""

    logits: jax.Array
    features: jax.Array
    extras: dict[str, jax.Array]


def no_params(rngs: nnx.Rngs, info: ModelInfo) -> None:
    """``init`` of a method without parameters of its own."""
    del rngs, info
    return None


class Method(NamedTuple):
    """A transfer method: its own networks, its loss and, optionally, its own step."""

    name: str
    init: Callable[[nnx.Rngs, ModelInfo], nnx.Module | None]
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    train_step: Callable[..., Any] | None = None
    hparams: dict[str, Any] = {}

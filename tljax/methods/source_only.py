"""Source only (ERM): train on labeled source data, no adaptation term.

``loss = CE(source)``; the method loss is identically zero. The baseline every
adaptation method is compared with.
"""

from __future__ import annotations

import jax.numpy as jnp

from tljax.methods.base import Method, no_params


def make() -> Method:
    """Builds the source-only baseline (it takes no hyperparameters)."""

    def loss(module, *, src, tgt, rng, step):
        del module, src, tgt, rng, step
        return jnp.zeros((), jnp.float32), {}

    return Method(name="source_only", init=no_params, loss=loss, needs_target=False)

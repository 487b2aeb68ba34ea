"""No adaptation: the source model's predictions (eval mode, running statistics).

The reference row of every test-time-adaptation table, computed on the same stream.
"""

from __future__ import annotations

from tljax.adaptation.base import Context, TTAMethod, forward, initial_state


def make(ctx: Context) -> TTAMethod:
    """The unadapted model."""

    def predict(state, x):
        return forward(ctx, state.params, state.rest, x, batch_stats=False)[0]

    def update(state, x, rng=None):
        return state, predict(state, x), {}

    return TTAMethod("source", lambda: initial_state(ctx), update, predict, {}, False)

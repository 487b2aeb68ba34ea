r"""Test-time BatchNorm adaptation (AdaBN on each test batch).

Every BatchNorm layer normalises with the mean and (biased) variance of the current test
batch instead of the source running statistics,

.. math:: \hat h = \gamma\,\frac{h - \mu_B}{\sqrt{\sigma^2_B + \epsilon}} + \beta,

the test-time form of AdaBN (Li et al., ICLR-W 2017; :func:`tljax.bn.adapt_batch_norm`
computes the same statistics over a whole data set) evaluated by Schneider et al.,
"Improving robustness against common corruptions by covariate shift adaptation"
(NeurIPS 2020, the ``N = 0`` case) and used as the "BN" baseline of Tent. No parameter
changes, so episodic and continual streams give the same predictions.
"""

from __future__ import annotations

from tljax.adaptation.base import (
    Context,
    TTAMethod,
    batch_norm_param_paths,
    forward,
    initial_state,
)


def make(ctx: Context) -> TTAMethod:
    """BatchNorm with test-batch statistics.

    Raises:
      ValueError: the model has no BatchNorm layer.
    """
    if not batch_norm_param_paths(ctx):
        raise ValueError("bn_adapt: the model has no BatchNorm layer to adapt.")

    def predict(state, x):
        return forward(ctx, state.params, state.rest, x, batch_stats=True)[0]

    def update(state, x, rng=None):
        return state.replace(step=state.step + 1), predict(state, x), {}

    return TTAMethod("bn_adapt", lambda: initial_state(ctx), update, predict, {}, False)

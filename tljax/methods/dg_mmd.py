r"""MMD across training domains, DomainBed's ``MMD`` (Li et al., CVPR 2018, MMD-AAE without
the adversarial autoencoder, as DomainBed implements it).

.. math::
   \min_{F,C}\; \tfrac1K\textstyle\sum_k R_k + \gamma\,\binom K2^{-1}
   \textstyle\sum_{i<j}\mathrm{MMD}^2_{k}(F(x_i), F(x_j))

with the sum of Gaussian kernels of DomainBed (``γ_k ∈ {0.001, 0.01, 0.1, 1, 10, 100,
1000}``, :func:`tljax.losses.dg_alignment.gaussian_mmd_penalty`). The trade-off is the
config's ``method.weight`` (DomainBed's ``mmd_gamma``: default 1, random search
``10^U(-1, 1)``).
"""

from __future__ import annotations

from tljax.losses.dg_alignment import gaussian_mmd_penalty
from tljax.methods import _pairwise
from tljax.methods.base import Method


def make() -> Method:
    """Builds DomainBed's MMD (no hyperparameters; the trade-off is ``method.weight``)."""
    return _pairwise.make("dg_mmd", gaussian_mmd_penalty)

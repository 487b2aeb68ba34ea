r"""CORAL across training domains, DomainBed's ``CORAL`` (Sun & Saenko, ECCV-W 2016, applied
to domain generalization).

.. math::
   \min_{F,C}\; \tfrac1K\textstyle\sum_k R_k + \gamma\,\binom K2^{-1}
   \textstyle\sum_{i<j}\big[\mathrm{mean}(\mu_i-\mu_j)^2 + \mathrm{mean}(C_i-C_j)^2\big]

on the features ``F(x)`` of each pair of training domains
(:func:`tljax.losses.dg_alignment.coral_penalty`, DomainBed's normalisation — not Deep
CORAL's ``1/4d²`` of :mod:`tljax.methods.coral`). The trade-off ``γ`` is the config's
``method.weight`` (DomainBed's ``mmd_gamma``: default 1, random search ``10^U(-1, 1)``).
"""

from __future__ import annotations

from tljax.losses.dg_alignment import coral_penalty
from tljax.methods import _pairwise
from tljax.methods.base import Method


def make() -> Method:
    """Builds DomainBed's CORAL (no hyperparameters; the trade-off is ``method.weight``)."""
    return _pairwise.make("dg_coral", coral_penalty)

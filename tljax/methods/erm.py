"""ERM: empirical risk minimisation over the pooled training domains (DomainBed's baseline).

.. math::
   \\min_{F,C}\\; \\tfrac1K \\textstyle\\sum_{k=1}^K \\mathbb{E}_{(x,y)\\sim D_k}[\\ell(C(F(x)), y)]

With equal batches per domain (:mod:`tljax.data.multi_domain`) this is the cross-entropy
of the pooled batch, i.e. :mod:`tljax.methods.source_only` under the name DomainBed gives
it (Gulrajani & Lopez-Paz, ICLR 2021: "ERM, tuned honestly, is hard to beat"). On a
single-source task it is source only.
"""

from __future__ import annotations

from tljax.methods import source_only
from tljax.methods.base import Method


def make() -> Method:
    """Builds ERM (no hyperparameters)."""
    return source_only.make()._replace(name="erm")

"""CDANN: conditional domain-adversarial training over the training domains (Li et al.,
ECCV 2018), as DomainBed's ``CDANN``: :mod:`tljax.methods.dg_dann` with
``conditional=True`` (see there)."""

from __future__ import annotations

from tljax.methods import dg_dann
from tljax.methods.base import Method, records_hparams


@records_hparams
def make(
    *,
    hidden: tuple[int, ...] = (256, 256),
    batch_norm: bool = False,
    grl_schedule: str = "warm_start",
    grl_hi: float = 1.0,
    grl_alpha: float = 1.0,
    grl_max_iters: float = 1000.0,
) -> Method:
    """Builds CDANN (arguments as :func:`tljax.methods.dg_dann.make`)."""
    m = dg_dann.make(
        conditional=True,
        hidden=hidden,
        batch_norm=batch_norm,
        grl_schedule=grl_schedule,
        grl_hi=grl_hi,
        grl_alpha=grl_alpha,
        grl_max_iters=grl_max_iters,
    )
    return m._replace(hparams={})

"""Test-time (source-free) adaptation methods, found by name.

``tljax.adaptation.get(name, ctx, **hparams)`` imports ``tljax.adaptation.<module>`` and
calls its ``make(ctx, **hparams)``, which returns a :class:`~tljax.adaptation.base.TTAMethod`
(pure ``init``/``update``/``predict``). :mod:`tljax.adapt` is the loop that drives them.
Add one with :func:`register`.

Built in: ``source`` (no adaptation), ``bn_adapt`` (test-batch BatchNorm statistics),
``tent``, ``t3a``, ``shot_im``, ``shot`` (SHOT-IM + per-batch clustering pseudo-labels),
``eata``, ``eta`` (EATA without its Fisher term), ``cotta``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tljax.adaptation.base import AdaptState, Context, TTAMethod
from tljax.registry import unknown_name_error

_BUILTIN = {
    "source": "tljax.adaptation.source",
    "bn_adapt": "tljax.adaptation.bn_adapt",
    "tent": "tljax.adaptation.tent",
    "t3a": "tljax.adaptation.t3a",
    "shot_im": "tljax.adaptation.shot",
    "shot": "tljax.adaptation.shot:make_shot",
    "eata": "tljax.adaptation.eata",
    "eta": "tljax.adaptation.eata:make_eta",
    "cotta": "tljax.adaptation.cotta",
}
_REGISTERED: dict[str, Callable] = {}


def register(name: str, make: Callable) -> None:
    """Adds a method ``make(ctx, **hparams) -> TTAMethod`` under ``name``.

    Raises:
      ValueError: ``name`` is a built-in method.
    """
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in test-time adaptation method.")
    _REGISTERED[name] = make


def names() -> list[str]:
    """The method names :func:`get` accepts."""
    return sorted({*_BUILTIN, *_REGISTERED})


def get(name: str, ctx: Context, **hparams) -> TTAMethod:
    """Builds the method ``name`` for the model in ``ctx``.

    Raises:
      ValueError: unknown name (listing the valid ones), or a bad hyperparameter.
    """
    if name in _REGISTERED:
        make = _REGISTERED[name]
    elif name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        make = getattr(importlib.import_module(module), attr or "make")
    else:
        raise unknown_name_error("test-time adaptation method", name, names())
    try:
        return make(ctx, **hparams)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ValueError(f"Test-time adaptation method {name!r}: {e}") from e
        raise


__all__ = ["AdaptState", "Context", "TTAMethod", "get", "names", "register"]

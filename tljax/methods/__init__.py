"""Transfer methods: the plug point of the trainer.

A method lives in one module ``tljax/methods/<name>.py`` that defines
``make(**hparams) -> Method``. ``get("dann", **hparams)`` imports ``tljax.methods.dann``
and calls its ``make``; ``names()`` lists the modules that define one.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from tljax.methods.base import Method, ModelInfo, Outputs

_NOT_METHODS = {"base"}


def names() -> list[str]:
    """Names of all available methods (modules of this package defining ``make``)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_METHODS:
            continue
        found.append(info.name)
    return sorted(found)


def get(name: str, **hparams) -> Method:
    """Builds the method ``name`` with the given hyperparameters.

    Raises:
      ValueError: if ``name`` is not a known method (the message lists the valid ones)
        or a hyperparameter is not accepted by the method.
    """
    valid = names()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Valid methods: {valid}.")
    module = importlib.import_module(f"tljax.methods.{name}")
    try:
        return module.make(**hparams)
    except TypeError as e:
        raise ValueError(f"Bad hyperparameters for method {name!r}: {e}") from e


__all__ = ["Method", "ModelInfo", "Outputs", "get", "names"]

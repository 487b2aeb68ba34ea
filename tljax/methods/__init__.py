"""Transfer methods: the plug point of the trainer.

A method is built by a factory ``make(**hparams) -> Method``. There are three ways in:

* built-in: a module ``tljax/methods/<name>.py`` that defines ``make``;
  ``get("dann", **hparams)`` imports ``tljax.methods.dann`` and calls its ``make``;
* ``register("my_method", make)`` from your own code (``make`` may also be a
  ``"module:function"`` string, imported on first use);
* an installed plug-in package's entry point in the group ``tljax.methods``
  (``my_method = "my_package.my_method:make"``), found lazily (see :mod:`tljax.registry`).

``names()`` lists them all; an unknown name raises the same ``ValueError`` as every
registry (what, the bad name, the closest match, the valid names).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from tljax import registry as _registry
from tljax.methods.base import Method, ModelInfo, Outputs

_NOT_METHODS = {"base"}


def _builtin_names() -> list[str]:
    """Modules of this package (``__path__``, also folders appended to it) that are methods."""
    return [
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name not in _NOT_METHODS
    ]


_REGISTRY = _registry.Registry(
    "method",
    _registry.GROUPS["method"],
    builtins=_builtin_names,
    load_builtin=lambda name: importlib.import_module(f"{__name__}.{name}"),
    adapt=_registry.module_make,
)


def register(name: str, factory: Callable[..., Method] | str) -> None:
    """Registers a method: ``factory(**hparams) -> Method`` (or ``"module:function"``, or a
    module defining ``make``). Its keyword arguments are the method's hyperparameters
    (``config.method.hparams``). Registering a name again replaces it.

    Raises:
      ValueError: if ``name`` is a built-in method.
    """
    _REGISTRY.register(name, factory)


def names() -> list[str]:
    """Names of all available methods: built-in, registered and installed plug-ins'."""
    return _REGISTRY.names()


def get_factory(name: str) -> Callable[..., Method]:
    """The factory ``make(**hparams) -> Method`` of method ``name``.

    Raises:
      ValueError: if ``name`` is not a known method (the message lists the valid ones).
    """
    return _REGISTRY.get(name)


def get(name: str, **hparams) -> Method:
    """Builds the method ``name`` with the given hyperparameters.

    Raises:
      ValueError: if ``name`` is not a known method (the message lists the valid ones)
        or a hyperparameter is not accepted by the method.
    """
    make = get_factory(name)
    try:
        return make(**hparams)
    except TypeError as e:
        raise ValueError(f"Bad hyperparameters for method {name!r}: {e}") from e


__all__ = ["Method", "ModelInfo", "Outputs", "get", "get_factory", "names", "register"]

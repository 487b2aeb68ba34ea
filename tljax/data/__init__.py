"""Data: transfer tasks, streams and pipelines.

The task registry (:mod:`tljax.data.tasks`) is re-exported here, imported on first use:
``tljax.data.register_task(name, factory, options)``, ``get_task``, ``task_names``,
``register_resolver``; and a task from your arrays (:mod:`tljax.data.arrays`):
``tljax.data.from_arrays(source=(x, y), target=x_t, ...)``, ``register_arrays(name, ...)``
for a config file. Installed packages add tasks through entry points of the group
``tljax.tasks`` (see :mod:`tljax.registry`).
"""

from __future__ import annotations

import importlib

_FROM_TASKS = (
    "RegisteredTask",
    "get_task",
    "register_resolver",
    "register_task",
    "registered_task_names",
    "task_names",
)


_FROM_ARRAYS = ("from_arrays", "register_arrays")  # tljax.data.arrays


def __getattr__(name: str):
    # Lazy: importing any tljax.data submodule must not import every dataset loader.
    if name in _FROM_TASKS:
        return getattr(importlib.import_module("tljax.data.tasks"), name)
    if name in _FROM_ARRAYS:
        return getattr(importlib.import_module("tljax.data.arrays"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_FROM_TASKS, *_FROM_ARRAYS])


__all__ = [*_FROM_TASKS, *_FROM_ARRAYS]

"""Data: transfer tasks, streams and pipelines.

The task registry (:mod:`tljax.data.tasks`) is re-exported here, imported on first use:
``tljax.data.register_task(name, factory, options)``, ``get_task``, ``task_names``,
``register_resolver``. Installed packages add tasks through entry points of the group
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


def __getattr__(name: str):
    # Lazy: importing any tljax.data submodule must not import every dataset loader.
    if name in _FROM_TASKS:
        return getattr(importlib.import_module("tljax.data.tasks"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_FROM_TASKS])


__all__ = list(_FROM_TASKS)

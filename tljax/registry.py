"""One registry style for methods, tasks and backbones.

Each registry has one documented way in, ``register(name, factory)``, and also finds the
plug-ins of installed packages through ``importlib.metadata`` entry points:

* methods: :func:`tljax.methods.register`, group ``tljax.methods``; the entry point loads
  ``make(**hparams) -> Method`` (or a module defining ``make``);
* tasks: :func:`tljax.data.register_task`, group ``tljax.tasks``; it loads
  ``factory(name, *, data_seed, **options) -> Task`` (its keyword parameters are the
  task's options) or a :class:`tljax.data.tasks.RegisteredTask`;
* backbones: :func:`tljax.models.register_backbone`, group ``tljax.backbones``; it loads
  ``factory(input_shape, *, rngs, **kwargs)`` returning the backbone module.

The entry point's name is the registered name, e.g. in a plug-in's ``pyproject.toml``::

    [project.entry-points."tljax.methods"]
    my_method = "my_package.my_method:make"

Entry points are looked up lazily: only when a name is not built in or registered, or when
the names are listed, so an installed plug-in costs nothing until it is used. Built-in and
``register``-ed names take precedence over entry points of the same name.

An unknown name raises the same ``ValueError`` everywhere (:func:`unknown_name_error`):
what was asked for, the bad name, the closest valid name and all valid names.
"""

from __future__ import annotations

import difflib
import importlib
import types
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

GROUPS = {"method": "tljax.methods", "task": "tljax.tasks", "backbone": "tljax.backbones"}


def unknown_name_error(
    what: str, name: str, valid: Iterable[str], *, where: str = "", extra: str = ""
) -> ValueError:
    """The error for an unknown name: ``Unknown <what> '<name>'<where>. Did you mean
    '<closest>'? Valid <what>s: [...]<extra>.``

    Args:
      what: the kind of thing (``"method"``, ``"task"``, ``"backbone"``).
      name: the name asked for.
      valid: the valid names.
      where: where the name came from, e.g. ``" (config.method.name)"``.
      extra: appended after the list of valid names (e.g. families of names).
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {what} {name!r}{where}.{hint} Valid {what}s: {valid}{extra}.")


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """``{name: entry point}`` of the installed distributions' entry points in ``group``
    (the first one on ``sys.path`` wins when two distributions use the same name)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def load_entry_point(ep: metadata.EntryPoint, what: str) -> Any:
    """Imports the object an entry point names.

    Raises:
      ImportError: naming the plug-in and the entry point when the import fails.
    """
    try:
        return ep.load()
    except Exception as e:
        dist = getattr(getattr(ep, "dist", None), "name", None)
        source = f" of the installed package {dist!r}" if dist else ""
        raise ImportError(
            f"Cannot load the {what} {ep.name!r}{source} (entry point {ep.name} = {ep.value} "
            f"in group {ep.group!r}): {type(e).__name__}: {e}"
        ) from e


def import_string(spec: str) -> Any:
    """Imports ``"module:attribute"`` (the attribute may be dotted)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"Expected 'module:attribute', got {spec!r}.")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """``name -> factory`` with built-ins, :meth:`register` and entry points.

    Args:
      what: the kind of thing, for messages (``"method"``).
      group: the entry-point group (``"tljax.methods"``).
      builtins: returns the built-in names (they cannot be replaced).
      load_builtin: returns the factory of a built-in name.
      adapt: maps a loaded object to the factory (e.g. a module to its ``make``).
    """

    def __init__(
        self,
        what: str,
        group: str,
        *,
        builtins: Callable[[], Iterable[str]] = tuple,
        load_builtin: Callable[[str], Any] | None = None,
        adapt: Callable[[Any], Any] = lambda obj: obj,
    ):
        self.what, self.group = what, group
        self._builtins, self._load_builtin, self._adapt = builtins, load_builtin, adapt
        self._registered: dict[str, Any] = {}

    def register(self, name: str, factory: Any) -> None:
        """Adds ``factory`` under ``name`` (a callable, or a ``"module:function"`` string
        imported on first use); registering a registered name again replaces it.

        Raises:
          ValueError: if ``name`` is built in, or not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.what} name must be a non-empty string, got {name!r}.")
        if name in set(self._builtins()):
            raise ValueError(
                f"The {self.what} {name!r} is built in and cannot be replaced; "
                "register it under another name."
            )
        self._registered[name] = factory

    def registered_names(self) -> list[str]:
        """The names added with :meth:`register` (or already loaded from entry points)."""
        return sorted(self._registered)

    def names(self) -> list[str]:
        """All valid names, sorted: built-in, registered and installed plug-ins'."""
        return sorted({*self._builtins(), *self._registered, *entry_points(self.group)})

    def __contains__(self, name: str) -> bool:
        return (
            name in self._registered
            or name in set(self._builtins())
            or (name in entry_points(self.group))
        )

    def get(self, name: str, *, where: str = "") -> Any:
        """The factory registered under ``name``.

        Raises:
          ValueError: for an unknown name (:func:`unknown_name_error`).
          ImportError: if a plug-in's entry point cannot be imported.
        """
        if name in self._registered:
            obj = self._registered[name]
        elif name in set(self._builtins()):
            obj = self._load_builtin(name)
        else:
            eps = entry_points(self.group)
            if name not in eps:
                raise unknown_name_error(self.what, name, self.names(), where=where)
            obj = load_entry_point(eps[name], self.what)
            self._registered[name] = obj  # loaded once
        if isinstance(obj, str):
            obj = import_string(obj)
        return self._adapt(obj)


def module_make(obj: Any) -> Any:
    """A module's ``make`` (for registries whose factories are ``make`` functions)."""
    if isinstance(obj, types.ModuleType):
        if not callable(getattr(obj, "make", None)):
            raise TypeError(f"Module {obj.__name__!r} defines no make(**hparams) function.")
        return obj.make
    return obj


__all__ = [
    "GROUPS",
    "Registry",
    "entry_points",
    "import_string",
    "load_entry_point",
    "module_make",
    "unknown_name_error",
]

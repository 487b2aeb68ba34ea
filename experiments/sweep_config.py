"""A sweep's config handling: config files, ``key=value`` overrides (checked against the
config's fields and the method's hyperparameters) and ``--grid`` values
(:mod:`experiments.sweep` re-exports these names)."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re


def load_config(path: str):
    """Loads ``get_config()`` from a config file (``path[:arg]``)."""
    file, _, arg = path.partition(":")
    if not os.path.exists(file):
        raise FileNotFoundError(f"Config file {file!r} does not exist.")
    spec = importlib.util.spec_from_file_location(f"_tljax_config_{abs(hash(file))}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def parse_value(raw: str):
    """A Python literal when ``raw`` parses as one, else the string itself."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def set_value(config, key: str, value, item: str = "") -> None:
    """Sets ``config.a.b.c = value`` for ``key = "a.b.c"``; ``method.hparams.X`` may be any
    hyperparameter of the method (also one the config does not set); ``method.name``
    switches the method (:func:`tljax.config.switch_method`).

    Raises:
      tljax.errors.ConfigError: (a ``ValueError``) if the key does not exist (with the
        closest key and the valid ones) or the value has the wrong type.
    """
    from tljax import config as config_lib
    from tljax.errors import ConfigError

    where = item or key
    if key == "method.name":
        config_lib.switch_method(config, value, source=where)
        return
    if key.startswith("method.hparams."):
        # As experiments.run's --config.method.hparams.X (the text a --parallel run gets):
        # checked against the method, parsed as the type of its value or default.
        text = value if isinstance(value, str) else repr(value)
        config_lib.set_method_hparam(config, key[len("method.hparams.") :], text, source=where)
        return
    node, done = config, []
    for p in key.split("."):
        if not hasattr(node, "keys") or p not in node:
            keys = sorted(node.keys()) if hasattr(node, "keys") else []
            close = difflib.get_close_matches(p, keys, n=1)
            hint = f" Did you mean {'.'.join([*done, close[0]])!r}?" if close else ""
            here = ".".join(done) or "the config"
            raise ConfigError(
                f"Unknown config key {key!r} in override {where!r}.{hint} Keys of {here}: {keys}."
            )
        parent, node, done = node, node[p], [*done, p]
    try:
        parent[done[-1]] = value
    except TypeError as e:
        raise ConfigError(f"Bad value in override {where!r}: {e}") from e


def apply_override(config, item: str) -> None:
    """Applies ``a.b.c=value`` (value parsed as a Python literal when possible)."""
    if "=" not in item:
        raise ValueError(f"Override {item!r} must look like key=value.")
    key, raw = item.split("=", 1)
    set_value(config, key, parse_value(raw), item)


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    """``["a.b=1,2", "c=x,y"]`` → ``[("a.b", [1, 2]), ("c", ["x", "y"])]``.

    Values are one Python literal list (``(100,),(200,)`` gives two tuples); if that does
    not parse, they are the comma-separated strings.

    Raises:
      ValueError: for an item without ``=``, no values, or a key given twice.
    """
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise ValueError(f"--grid={item!r} must look like key=v1,v2,... .")
        try:
            values = ast.literal_eval(f"[{raw}]")
        except (ValueError, SyntaxError):
            values = raw.split(",")
        if any(k == key for k, _ in out):
            raise ValueError(f"--grid key {key!r} is given twice; give its values once.")
        out.append((key, list(values)))
    return out


def format_value(value) -> str:
    """A value as it appears in a run directory name (``0.1``, ``(100, 50)`` → ``100_50``)."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("_") or "_"

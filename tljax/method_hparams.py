"""A run's method hyperparameters: the valid names and defaults (the keyword arguments of
the method's ``make``), checking a name, parsing a command-line value as the default's
type, filling defaults in, and switching a config to another method. Re-exported by
:mod:`tljax.config`, where the rest of the config schema lives.
"""

from __future__ import annotations

import ast
import difflib
import inspect

from tljax.errors import ConfigError


def _did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def method_hparam_defaults(name: str) -> dict | None:
    """``{hyperparameter: default}`` of method ``name`` (the keyword arguments of its
    ``make``; a parameter without a default maps to ``inspect.Parameter.empty``), or
    ``None`` when ``make`` takes ``**kwargs`` (any name may be valid).

    Raises:
      ConfigError: if ``name`` is not a method (the message lists the valid ones).
    """
    from tljax import methods

    valid = methods.names()
    if name not in valid:
        raise ConfigError(
            f"Unknown method {name!r} (config.method.name).{_did_you_mean(name, valid)} "
            f"Valid methods: {valid}."
        )
    make = methods.get_factory(name)
    params = inspect.signature(make).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name: p.default
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def check_method_hparam(method: str, key: str, *, source: str = "") -> None:
    """Raises :class:`ConfigError` unless ``key`` is a hyperparameter of ``method``.

    Args:
      method: the method's name.
      key: the hyperparameter name.
      source: where ``key`` came from (e.g. the command-line flag), for the message.
    """
    defaults = method_hparam_defaults(method)
    if defaults is None or key in defaults:
        return
    where = f" (from {source})" if source else ""
    raise ConfigError(
        f"Method {method!r} has no hyperparameter {key!r}{where}.{_did_you_mean(key, defaults)} "
        f"Valid: {sorted(defaults)}."
    )


def _parse_like(text: str, like):
    """``text`` as a value of the type of ``like`` (the current or default value)."""
    if isinstance(like, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, str):
        return text
    try:  # tuples, lists, None, or a hyperparameter whose default is None
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if isinstance(like, (tuple, list)):
            raise ValueError(f"expected a tuple like (32, 32), got {text!r}") from None
        return text
    return tuple(value) if isinstance(like, tuple) and isinstance(value, list) else value


def set_method_hparam(config, name: str, text: str, *, source: str = "") -> None:
    """Sets ``config.method.hparams[name]`` from command-line text (``--config.method.
    hparams.NAME=TEXT``), also for a hyperparameter the config file does not set.

    The text is parsed as the type of the value the config holds, else of the default of
    the method's ``make`` (``ast.literal_eval`` when that is ``None``: tuples, numbers;
    other text stays a string).

    Raises:
      ConfigError: if ``name`` is not a hyperparameter of the method (the message has the
        closest name and the valid ones) or ``text`` does not parse.
    """
    method = config.method.name
    check_method_hparam(method, name, source=source)
    hp = config.method.hparams
    like = hp[name] if name in hp else (method_hparam_defaults(method) or {}).get(name)
    like = None if like is inspect.Parameter.empty else like
    try:
        value = _parse_like(text, like)
    except ValueError as e:
        raise ConfigError(f"Bad value in {source or name}: {e}.") from e
    with hp.unlocked():
        if name in hp:
            del hp[name]  # the type may change (e.g. a None default set to an int)
        hp[name] = value


def hparams_with_defaults(method: str, hparams: dict) -> dict:
    """``hparams`` plus every other hyperparameter of ``method``'s factory at its default
    (one without a default is left out; ``hparams`` itself for a ``**kwargs`` factory or
    an unknown method)."""
    try:
        defaults = method_hparam_defaults(method)
    except ConfigError:
        return dict(hparams)
    out = dict(hparams)
    for k, v in (defaults or {}).items():
        if k not in out and v is not inspect.Parameter.empty:
            out[k] = v
    return out


def switch_method(config, name: str, *, source: str = "") -> list[str]:
    """Sets ``config.method.name = name`` and drops the hyperparameters in
    ``config.method.hparams`` that method ``name`` does not take, with a one-line warning
    on stderr naming them (``--config.method.name=swd`` on a CORAL config drops
    ``style``). Hyperparameters given after it (``--config.method.hparams.X``) are checked
    against the new method.

    Returns:
      The dropped names.

    Raises:
      ConfigError: if ``name`` is not a method (the message lists the valid ones).
    """
    import sys

    defaults = method_hparam_defaults(name)  # raises for an unknown method
    old = config.method.name
    config.method.name = name
    hp = config.method.hparams
    dropped = [] if defaults is None else sorted(k for k in hp if k not in defaults)
    if dropped:
        with hp.unlocked():
            for k in dropped:
                del hp[k]
        where = f"{source}: " if source else ""
        message = (
            f"warning: {where}dropped hyperparameters of method {old!r} that {name!r} does "
            f"not take: {dropped}"
        )
        if message not in _WARNED:  # a sweep builds each run's config more than once
            _WARNED.add(message)
            print(message, file=sys.stderr)
    return dropped


_WARNED: set[str] = set()

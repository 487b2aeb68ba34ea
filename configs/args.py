"""Parsing of config-file arguments: ``configs/x.py:key=value,key=value``."""

from tljax.errors import ConfigError


def parse_args(arg: str, types: dict, allowed=None) -> dict:
    """``"a=1,b=x"`` → ``{"a": types["a"]("1"), "b": types["b"]("x")}``.

    Args:
      arg: the text after ``:`` in ``--config=file.py:...`` (may be empty).
      types: key → converter of its value.
      allowed: the accepted keys (default: all of ``types``).

    Raises:
      ConfigError: (a ``ValueError``) for an item without ``=``, a key not in ``allowed``
        (with the closest one), or a value its converter rejects.
    """
    import difflib

    allowed = tuple(types) if allowed is None else tuple(allowed)
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close and sep else ""
            raise ConfigError(
                f"Bad config argument {item!r}; expected key=value with keys "
                f"{sorted(allowed)}.{hint}"
            )
        try:
            out[key] = types[key](value)
        except (TypeError, ValueError) as e:
            kind = getattr(types[key], "__name__", str(types[key]))
            raise ConfigError(f"Bad config argument {item!r}: {key} takes {kind} ({e}).") from e
    return out

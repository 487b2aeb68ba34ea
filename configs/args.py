"""Parsing of config-file arguments: ``configs/x.py:key=value,key=value``."""


def parse_args(arg: str, types: dict, allowed=None) -> dict:
    """``"a=1,b=x"`` → ``{"a": types["a"]("1"), "b": types["b"]("x")}``.

    Args:
      arg: the text after ``:`` in ``--config=file.py:...`` (may be empty).
      types: key → converter of its value.
      allowed: the accepted keys (default: all of ``types``).

    Raises:
      ValueError: for an item without ``=`` or a key not in ``allowed``.
    """
    allowed = tuple(types) if allowed is None else tuple(allowed)
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise ValueError(
                f"Bad config argument {item!r}; expected key=value with keys {sorted(allowed)}."
            )
        out[key] = types[key](value)
    return out

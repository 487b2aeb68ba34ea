"""Error types the command line reports as one line (exit status 2, no traceback).

``experiments/run.py`` catches :class:`UserError` (and its subclasses) and prints
``error: <message>``; ``--debug`` shows the traceback instead. Raise a subclass of
:class:`UserError` for anything the user can fix (a bad config value, a missing or
unreadable file, an unwritable workdir, a locked or corrupt checkpoint); let programming
errors propagate as ordinary exceptions so they keep their traceback.

A message should say what was wrong, the bad value, and the valid options, on one line.

Each class also derives from the builtin exception callers caught before it existed
(``ValueError``, ``FileNotFoundError``, ``OSError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by the user's input rather than by a bug in tljax."""


class ConfigError(UserError, ValueError):
    """A config key or value is invalid (unknown key, bad value, bad config argument)."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A path named in the config or on the command line does not exist."""


class UserFileError(UserError, OSError):
    """A file named by the user cannot be read, parsed or written (garbage weights,
    unwritable workdir, disk full)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package needed for what the config asks (e.g. torch for .pth weights)
    is not installed; the message says what to install."""


def as_float(value) -> float:
    """``value`` as a float, or NaN when it is not a number (``"high"``, ``None``), so that
    one range check such as ``if not x >= 0`` refuses both with the same message."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def check_weight(method: str, name: str, value) -> float:
    """``value`` as a float if it is a finite weight ``>= 0``.

    Raises:
      ValueError: ``"<method>: <name> must be a finite weight >= 0, got <value>."``, also
        for a value that is not a number.
    """
    x = as_float(value)
    if not 0.0 <= x < float("inf"):
        raise ValueError(f"{method}: {name} must be a finite weight >= 0, got {x!r}.")
    return x

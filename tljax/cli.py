"""The installed ``tljax`` command: one entry point for the experiment scripts.

    tljax run --config=tljax:dann_digits_m --workdir=runs/dann --config.train.steps=500
    tljax run --config=path/to/my_config.py --workdir=runs/mine
    tljax sweep --configs=tljax:source_only_digits_m,tljax:dann_digits_m --seeds=0,1,2 ...
    tljax report --workdir=runs/sweep
    tljax bench --config=tljax:dann_digits_m
    tljax configs                 # lists the shipped configs

``tljax CMD ARGS`` is ``python -m experiments.CMD ARGS`` (same flags, same exit statuses)
from any directory: the ``experiments`` and ``configs`` packages ship with tljax and are
imported only when a command runs.

A config is a file anywhere on disk (``--config=path.py[:arg]``) or one of the shipped
configs by name, ``--config=tljax:NAME[:arg]`` (``NAME`` as in ``tljax configs``, e.g.
``dann_digits_m``, ``transfer/finetune``). ``tljax:`` names work in ``--config`` and
``--configs`` of every command.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import runpy
import sys

from tljax.errors import UserError, UserFileNotFoundError

COMMANDS = {
    "run": ("experiments.run", "train and evaluate one config"),
    "sweep": ("experiments.sweep", "several configs x seeds x a grid (resumable)"),
    "report": ("experiments.report", "tables and plots of a sweep's runs"),
    "bench": ("experiments.bench", "time the train step"),
}
PREFIX = "tljax:"
EXIT_USER_ERROR = 2


def configs_dir() -> str:
    """The folder of the shipped ``configs`` package.

    Raises:
      UserFileNotFoundError: if it is not importable, or another package named
        ``configs`` (e.g. in the current directory) hides it.
    """
    spec = importlib.util.find_spec("configs")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        if os.path.isfile(os.path.join(folder, "digits_m_common.py")):
            return folder
    if locations:
        raise UserFileNotFoundError(
            f"The package 'configs' found at {locations} is not tljax's (it lacks "
            "digits_m_common.py): another 'configs' on sys.path hides the shipped configs. "
            "Run from another directory or give the config file's path."
        )
    raise UserFileNotFoundError(
        "tljax's shipped configs are not installed (no importable 'configs' package); "
        "reinstall tljax or give the config file's path."
    )


def shipped_configs() -> list[str]:
    """Names of the shipped configs (``tljax:NAME``): the modules of ``configs`` that
    define ``get_config``, sorted, without the shared settings (``*common``; they still
    resolve, e.g. ``tljax:moons_common:dann``)."""
    root = configs_dir()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        rel = os.path.relpath(folder, root)
        for f in files:
            name = f[: -len(".py")]
            if f.endswith(".py") and not name.startswith("_") and not name.endswith("common"):
                if not _defines_get_config(folder, f):
                    continue
                found.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
    return sorted(found)


def _defines_get_config(folder: str, file: str) -> bool:
    with open(os.path.join(folder, file), encoding="utf-8") as fh:
        return "\ndef get_config(" in fh.read()


def config_path(name: str) -> str:
    """The file of the shipped config ``name`` (``dann_digits_m``, ``transfer/finetune``;
    ``.`` may replace ``/`` and a ``.py`` suffix is allowed).

    Raises:
      UserFileNotFoundError: if there is no such config (naming the closest one).
    """
    clean = name[: -len(".py")] if name.endswith(".py") else name
    if "/" not in clean:
        clean = clean.replace(".", "/")
    path = os.path.join(configs_dir(), *clean.split("/")) + ".py"
    if not clean or clean.startswith("/") or ".." in clean.split("/") or not os.path.isfile(path):
        valid = shipped_configs()
        close = difflib.get_close_matches(clean, valid, n=1)
        hint = f" Did you mean {PREFIX + close[0]!r}?" if close else ""
        raise UserFileNotFoundError(
            f"Unknown shipped config {PREFIX + name!r}.{hint} Valid: "
            f"{[PREFIX + v for v in valid]} (or give a config file's path)."
        )
    return path


def resolve_config(spec: str) -> str:
    """``tljax:NAME[:arg]`` -> ``/path/to/configs/NAME.py[:arg]``; other specs unchanged
    (a file whose name starts with ``tljax:`` is ``./tljax:...``)."""
    if not spec.startswith(PREFIX):
        return spec
    name, sep, arg = spec[len(PREFIX) :].partition(":")
    return config_path(name) + sep + arg


def _resolve_list(specs: str) -> str:
    return ",".join(resolve_config(s) for s in specs.split(","))


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``tljax:`` config of ``--config``/``--configs`` resolved
    (``--config=X``, ``--config X``; ``--configs=a,b``, ``--configs a,b``)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        for flag, fix in (("--config", resolve_config), ("--configs", _resolve_list)):
            if a.startswith(flag + "="):
                a = f"{flag}={fix(a[len(flag) + 1 :])}"
                break
            if a == flag and i + 1 < len(argv):
                out.append(a)
                i, a = i + 1, fix(argv[i + 1])
                break
        out.append(a)
        i += 1
    return out


def _usage() -> str:
    lines = ["usage: tljax COMMAND [FLAGS]  (tljax COMMAND --help for its flags)", ""]
    lines += [f"  {name:8s} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [f"  {'configs':8s} list the shipped configs (--config=tljax:NAME)"]
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: list[str] | None = None) -> int:
    """Runs ``tljax COMMAND ARGS``; returns (or exits with) the command's status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else EXIT_USER_ERROR
    command, rest = argv[0], argv[1:]
    try:
        if command == "configs":
            try:
                print("\n".join(PREFIX + n for n in shipped_configs()), flush=True)
            except BrokenPipeError:  # tljax configs | head
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if command not in COMMANDS:
            valid = sorted([*COMMANDS, "configs"])
            close = difflib.get_close_matches(command, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            return _fail(f"Unknown command {command!r}.{hint} Valid commands: {valid}.")
        rest = resolve_config_args(rest)
    except UserError as e:
        return _fail(str(e))
    module = COMMANDS[command][0]
    sys.argv[:] = [f"tljax {command}", *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

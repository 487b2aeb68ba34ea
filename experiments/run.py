r"""Runs one experiment.

    python -m experiments.run --config=configs/dann_digits.py --workdir=runs/dann \
        --config.seed=1 --config.train.steps=500

Re-running with the same workdir resumes from its last checkpoint. A config file may
take an argument after a colon (``configs/x.py:source=amazon,target=webcam``) if its
``get_config`` accepts one. ``--config.method.hparams.NAME=VALUE`` sets any
hyperparameter of the method, also one the config file leaves at its default.
``--config=tljax:NAME[:arg]`` names a shipped config (``configs/NAME.py``) from anywhere;
the installed ``tljax run`` command is the same as this module (``tljax/cli.py``).
``--config.method.name=NAME`` switches the method: hyperparameters the config file set
that NAME does not take are dropped with a one-line warning naming them.

Model selection: unless the config sets ``data.source_val_fraction``, 10% of source train
is held out (``source_val_acc`` and the DEV score in the eval logs); ``--noholdout``
trains on all of it (as a run from Python does). The effective config (optimizer
defaults, every method hyperparameter: ``tljax.config.resolve``) is printed at the start
and written to ``workdir/config.json``.

Mistakes in the input (an unknown config key or method hyperparameter, a missing config
file, a bad config argument or value, a missing or unreadable weights file or
``init_from`` run, an unwritable workdir, a full disk) end the run with one line
``error: ...`` on stderr and exit status 2, before anything is created where possible;
``--debug`` shows the traceback instead. A loss that became NaN/Inf exits with 1.

Data-parallel over several processes (hosts): start one copy per process with
``--coordinator_address=host0:port --num_processes=P --process_id=i`` (or
``$JAX_COORDINATOR_ADDRESS``, ``$JAX_NUM_PROCESSES``, ``$JAX_PROCESS_ID``; under SLURM's
``srun`` nothing is needed). ``data.batch_size`` stays the global batch; see
docs/scaling.md.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import os
import sys
import tempfile

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from tljax import config as config_lib
from tljax.cli import resolve_config_args
from tljax.errors import ConfigError, UserError, UserFileError, UserFileNotFoundError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs: host:port of process 0."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process runs: processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's id.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of an input error.")
_HOLDOUT = flags.DEFINE_bool(
    "holdout",
    True,
    "Hold out data.source_val_fraction=0.1 of source train for model selection unless the "
    "config sets the fraction; --noholdout: none.",
)
flags.mark_flags_as_required(["config", "workdir"])

EXIT_USER_ERROR = 2  # a mistake in the input; exit 1 stays for a failed run (NaN loss)
_HPARAMS = "--config.method.hparams."
_METHOD_NAME = "--config.method.name"
# OSErrors the user fixes (permissions, space, paths), reported as one line.
_USER_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}


def _fail(message: str, code: int = EXIT_USER_ERROR):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _debug_requested(argv) -> bool:
    """``--debug`` before the flags are parsed (a parse error must honour it too)."""
    return any(a in ("--debug", "--debug=true", "--debug=True", "--debug=1") for a in argv)


def _config_spec(argv) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _load_config(spec: str):
    """Runs ``get_config`` of ``path[:arg]`` to report a missing file or a bad argument as
    one line (``config_flags`` would wrap them in a traceback)."""
    path, sep, arg = spec.partition(":")
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        files = (
            sorted(f for f in os.listdir(folder) if f.endswith(".py"))
            if os.path.isdir(folder)
            else []
        )
        close = [
            os.path.join(os.path.dirname(path), f) for f in _close(os.path.basename(path), files)
        ]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserFileNotFoundError(f"Config file {path!r} (--config={spec}) does not exist.{hint}")
    module_spec = importlib.util.spec_from_file_location("_tljax_run_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        return module.get_config(arg) if sep else module.get_config()
    except UserError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"--config={spec}: {type(e).__name__}: {e}") from e


def _close(name, options):
    import difflib

    return difflib.get_close_matches(name, list(options), n=1)


def _check_override_keys(config, argv) -> None:
    """Every ``--config.a.b=v`` must name a key the config has (ml_collections would raise
    an AttributeError with a traceback)."""
    for a in argv:
        if not a.startswith("--config.") or a.startswith(_HPARAMS):
            continue
        path = a[len("--config.") :].split("=", 1)[0]
        node, done = config, []
        for key in path.split("."):
            if not hasattr(node, "keys") or key not in node:
                here = "config" + "".join(f".{k}" for k in done)
                keys = sorted(node.keys()) if hasattr(node, "keys") else []
                hint = (
                    f" Did you mean {'.'.join([*done, _close(key, keys)[0]])!r}?"
                    if _close(key, keys)
                    else ""
                )
                raise ConfigError(
                    f"Unknown config key {path!r} ({a}).{hint} Keys of {here}: {keys}."
                )
            node, done = node[key], [*done, key]


def _split_hparam_overrides(argv):
    """``(argv without --config.method.hparams.*, [(name, text, flag), ...])``."""
    rest, hparams, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith(_HPARAMS):
            name, sep, text = a[len(_HPARAMS) :].partition("=")
            if not sep:  # "--config.method.hparams.x VALUE", or a bare boolean flag
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    i, text = i + 1, argv[i + 1]
                else:
                    text = "true"
            hparams.append((name, text, a))
        else:
            rest.append(a)
        i += 1
    return rest, hparams


def _split_method_name(argv):
    """``(argv without --config.method.name, (name, flag) or None)``: the switch is applied
    by :func:`tljax.config.switch_method` (it drops the old method's hyperparameters)."""
    rest, found, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == _METHOD_NAME and i + 1 < len(argv):
            found, i = (argv[i + 1], a), i + 1
        elif a.startswith(_METHOD_NAME + "="):
            found = (a.split("=", 1)[1], a)
        else:
            rest.append(a)
        i += 1
    return rest, found


def _parse_flags(argv):
    """absl's flag parsing, with input errors reported as one line (exit 2)."""
    debug = _debug_requested(argv)
    argv, hparams = _split_hparam_overrides(argv)
    argv, method_name = _split_method_name(argv)
    sys.argv[:] = argv  # config_flags reads its overrides from sys.argv
    try:
        argv = resolve_config_args(argv)  # --config=tljax:NAME, a shipped config
        sys.argv[:] = argv
        spec = _config_spec(argv)
        if spec is not None:
            _check_override_keys(_load_config(spec), argv)
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            raise ConfigError(str(e).strip().splitlines()[0]) from e
        if method_name is not None:
            config_lib.switch_method(_CONFIG.value, method_name[0], source=method_name[1])
        for name, text, flag in hparams:
            config_lib.set_method_hparam(_CONFIG.value, name, text, source=flag)
    except UserError as e:
        if debug:
            raise
        _fail(str(e))
    return rest


def _check_workdir(workdir: str) -> None:
    """Creates ``workdir`` and checks that files can be written there."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise UserFileError(f"Cannot write to --workdir={workdir!r}: {e.strerror or e}.") from e


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # absl's handler on the root logger (WARNING) would drop tljax's INFO lines: the
    # effective config, progress lines off a terminal, "Resumed from step ...".
    tljax_log = logging.getLogger("tljax")
    if not tljax_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        tljax_log.addHandler(handler)
    tljax_log.setLevel(logging.INFO)
    tljax_log.propagate = False
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    from tljax import distributed
    from tljax.checkpoint import CheckpointError
    from tljax.train import train_and_evaluate

    try:
        config = _CONFIG.value
        if config.data.source_val_fraction is None:  # the config file leaves it unset
            hold = config_lib.CLI_SOURCE_VAL_FRACTION if _HOLDOUT.value else 0.0
            config.data.source_val_fraction = hold
        # Everything the config can get wrong, before the workdir is created.
        config_lib.validate(_CONFIG.value)
        config_lib.check_files(_CONFIG.value)
        _check_workdir(_WORKDIR.value)
        # Before any JAX computation; a no-op for a single-process run.
        distributed.maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except FloatingPointError as e:
        if _DEBUG.value:
            raise
        _fail(str(e), code=1)
    except (UserError, ValueError, FileNotFoundError, CheckpointError) as e:
        if _DEBUG.value:
            raise
        _fail(str(e))
    except OSError as e:
        if _DEBUG.value or e.errno not in _USER_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        _fail(f"{e.strerror or e}{where}.")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)

"""The run directory: one run at a time (a lock), files replaced atomically, the config
a run records (:func:`check_config`), and a new run's start from another's weights
(:func:`init_from`).

A run holds ``<workdir>/run.lock`` while it lives: an ``fcntl.flock`` on an open file
descriptor, so the kernel releases it when the process ends in any way (``kill -9``
included) and a crashed run never leaves a stale lock behind. The file names the holder
(PID, host, start time) for the one-line refusal a second run gets. Where the filesystem
does not support ``flock``, the file itself is the lock: created exclusively, and taken
over when it names a dead process on this host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import tempfile
import time

from tljax.errors import UserError

log = logging.getLogger("tljax")

LOCK_NAME = "run.lock"
# flock on a filesystem that cannot lock (some network filesystems).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class WorkdirBusy(UserError, RuntimeError):
    """Another live run holds the workdir's lock (the message names it)."""


def fsync_dir(path: str) -> None:
    """Makes a rename or a new file in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: str | bytes) -> None:
    """Replaces ``path`` with ``data``: a temporary file in the same directory, fsync,
    ``os.replace``, fsync of the directory. A crash at any point leaves either the old
    file or the new one, never a mix or an empty file.

    Raises:
      OSError: the write failed (the old file is unchanged; the temporary file is removed).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(info: dict) -> str:
    if not info:
        return "another process (holder unknown)"
    since = info.get("started")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    return f"pid {info.get('pid')} on host {info.get('host')}{when}"


def read_holder(workdir: str) -> dict:
    """What the lock file of ``workdir`` says about its holder (``{}`` if nothing)."""
    try:
        with open(os.path.join(workdir, LOCK_NAME)) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


def holder(workdir: str) -> dict | None:
    """The live run holding ``workdir`` (``{"pid", "host", "started"}``), or ``None``.

    Does not take the lock: a run may start or end right after this returns.
    """
    path = os.path.join(workdir, LOCK_NAME)
    if not os.path.exists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(workdir)
    except OSError as e:
        if e.errno not in _NO_FLOCK:
            raise
        info = read_holder(workdir)
        return info if info and not _stale(info) else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _stale(info: dict) -> bool:
    """A lock file of a dead process on this host (other hosts cannot be checked)."""
    pid = info.get("pid")
    return info.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


class WorkdirLock:
    """Holds ``<workdir>/run.lock`` from :meth:`acquire` to :meth:`release`.

    Use as a context manager. ``enabled=False`` makes it a no-op (processes other than
    process 0 of a multi-process run, which share process 0's workdir).

    Raises:
      WorkdirBusy: (from ``acquire``/``__enter__``) another live run holds the workdir; the
        message names it.
    """

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_NAME)
        self.enabled = enabled
        self._fd: int | None = None
        self._owns_file = False

    def _busy(self, info: dict) -> WorkdirBusy:
        return WorkdirBusy(
            f"{self.workdir} is in use by another run ({_describe(info)}); wait for it to "
            f"finish or use another workdir (lock file: {self.path})."
        )

    def acquire(self) -> WorkdirLock:
        if not self.enabled or self._fd is not None:
            return self
        os.makedirs(self.workdir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(read_holder(self.workdir)) from None
            except OSError as e:
                os.close(fd)
                if e.errno not in _NO_FLOCK:
                    raise
                return self._acquire_by_file()
            # A holder may have removed the file between our open and flock: retry on the
            # file that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = read_holder(self.workdir)
        if previous and previous.get("pid") != os.getpid():
            log.info(
                "Previous run on %s (%s) ended without releasing; taking over.",
                self.workdir,
                _describe(previous),
            )
        self._fd = fd
        self._write_info(fd)
        return self

    def _acquire_by_file(self) -> WorkdirLock:
        """The lock without flock: exclusive creation; a dead holder's file is taken over."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = read_holder(self.workdir)
                if not _stale(info):
                    raise self._busy(info) from None
                log.warning("Removing the stale lock of %s (no such process).", _describe(info))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            self._fd, self._owns_file = fd, True
            self._write_info(fd)
            return self
        raise self._busy(read_holder(self.workdir))

    @staticmethod
    def _write_info(fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no holder named any more
        if self._owns_file:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_config(workdir: str, config, *, write: bool = True) -> None:
    """Refuses to resume a run in ``workdir`` with a different config, then records
    ``config`` in ``<workdir>/config.json`` (atomically: a run killed while writing leaves
    the old file or the new one, never half of one).

    Fields a resume may change (``config_lib.RESUMABLE_FIELDS``) are not compared; a run
    recorded before a hyperparameter's default was filled in, or before a config field
    existed, compares as if it had recorded the default.

    Raises:
      ValueError: naming the fields that differ, the old and the new values.
    """
    from tljax import config as config_lib

    path = os.path.join(workdir, "config.json")
    now = {
        k: v for k, v in config_lib.flatten(config).items() if k not in config_lib.RESUMABLE_FIELDS
    }
    now = json.loads(json.dumps(now, default=str))
    if os.path.exists(path):
        with open(path) as f:
            before = {k: v for k, v in json.load(f).items() if k not in config_lib.RESUMABLE_FIELDS}
        # Runs recorded before hyperparameter defaults were filled in: the same defaults.
        if isinstance(before.get("method.hparams"), dict):
            filled = config_lib.hparams_with_defaults(
                before.get("method.name", ""), before["method.hparams"]
            )
            before["method.hparams"] = json.loads(json.dumps(filled, default=str))
        # A field added to the schema after the run started holds its default: not a change.
        defaults = json.loads(json.dumps(config_lib.flatten(config_lib.base_config()), default=str))
        for k in set(now) - set(before):
            if k in defaults and now[k] == defaults[k]:
                before[k] = now[k]
        diff = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
        if diff:
            hint = (
                " (The command line holds out data.source_val_fraction=0.1 unless the config "
                "sets it; --noholdout resumes a run trained on all of source train.)"
                if "data.source_val_fraction" in diff
                else ""
            )
            raise ValueError(
                f"{workdir} holds a run with a different config (differs in {diff}: "
                f"{[(before.get(k), now.get(k)) for k in diff]}). Use a new workdir, or "
                f"the same config to resume.{hint}"
            )
    if not write:
        return
    record = json.loads(json.dumps(config_lib.flatten(config), default=str))
    atomic_write(path, json.dumps(record, indent=1))


def init_from(params, rest, workdir: str, include: str):
    """Copies the parameters (and BatchNorm statistics) whose paths match ``include`` from
    the last checkpoint of the run in ``workdir``.

    Raises:
      ValueError: if nothing matches, or a matching parameter's shape differs.
    """
    import re

    import jax
    import jax.numpy as jnp

    from tljax import optim
    from tljax.checkpoint import load_trained

    src_params, src_rest = load_trained(workdir)
    regex = re.compile(include)
    copied = []

    def copy(tree, src):
        def one(path, leaf):
            name = optim.path_str(path)
            if not regex.search(name):
                return leaf
            if name not in src:
                raise ValueError(
                    f"{name} matches init_include={include!r} but is not in the "
                    f"checkpoint of {workdir}."
                )
            if tuple(src[name].shape) != tuple(leaf.shape):
                raise ValueError(
                    f"{name}: shape {tuple(leaf.shape)} here but "
                    f"{tuple(src[name].shape)} in {workdir}."
                )
            copied.append(name)
            return jnp.asarray(src[name], leaf.dtype)

        return jax.tree_util.tree_map_with_path(one, tree)

    params, rest = copy(params, src_params), copy(rest, src_rest)
    if not copied:
        raise ValueError(
            f"init_include={include!r} matches no parameter; paths look like "
            f"{optim.param_paths(params)[:3]}."
        )
    log.info("Initialised %d arrays from %s", len(copied), workdir)
    return params, rest

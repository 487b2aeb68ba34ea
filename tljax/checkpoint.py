"""Orbax checkpoints of a run: train state plus JSON metadata (input positions, config).

Paths are made absolute (Orbax requires it, and the error would surface only at
``wait_until_finished``). Saving is asynchronous; :meth:`Checkpointer.close` waits for
pending saves, so call it (or use the checkpointer as a context manager) before exit.

Failures end the run, never hang it. Step directories are created synchronously, so a
file where ``checkpoints/`` should be, or a read-only directory, fails at the first
:meth:`Checkpointer.save`; a write that fails in the background (a full disk) is raised by
the next ``save``, ``wait`` or ``close`` as :class:`CheckpointWriteError`, and ``close``
stops Orbax's threads even then. The writes still in flight are cancelled before Orbax
closes their event loop, and a TensorStore write that completes after its loop closed is
not reported as a stray ``Event loop is closed`` traceback, so that error is the only
message (:mod:`tljax.orbax_async`).

Integrity: before Orbax publishes a step (renames its temporary directory), the SHA-256
and size of every file of the step's items are written to ``<step>/tljax_manifest.json``
(Orbax's own ``_CHECKPOINT_METADATA`` and ``commit_success.txt``, written after that, are
not covered). :meth:`Checkpointer.restore` checks it: a step whose file is changed,
truncated, extended, missing or added is skipped with a warning naming it, moved to
``<workdir>/checkpoints.rejected/`` (nothing is deleted) and the run resumes from the
newest step that verifies; if none does, :class:`CheckpointError` names each step and why.
A step *without* a manifest (written by tljax before manifests existed, or by a run killed
between writing its files and publishing it) is unverified and treated the same way; if
you trust such a checkpoint, :func:`seal` writes its manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp

from tljax.orbax_async import quiet_orbax_errors
from tljax.workdir import atomic_write

log = logging.getLogger("tljax")

MANIFEST = "tljax_manifest.json"
# Top-level files Orbax writes when it commits a step, after the manifest is written.
_ORBAX_COMMIT_FILES = ("_CHECKPOINT_METADATA", "commit_success.txt")
_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax's temporary step directory (atomic rename)


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored (corrupt, unverified or incompatible)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (no directory, no permission, disk full)."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _data_files(step_dir: str) -> list[str]:
    """The files of a step directory the manifest covers, relative and sorted."""
    out = []
    for root, _, files in os.walk(step_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != MANIFEST and rel not in _ORBAX_COMMIT_FILES:
                out.append(rel)
    return sorted(out)


def write_manifest(step_dir: str) -> None:
    """Writes ``<step_dir>/tljax_manifest.json``: size and SHA-256 of every data file."""
    files = {}
    for rel in _data_files(step_dir):
        path = os.path.join(step_dir, rel)
        files[rel] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
    atomic_write(os.path.join(step_dir, MANIFEST), json.dumps({"version": 1, "files": files}))


def verify(step_dir: str) -> str | None:
    """Checks a step directory against its manifest.

    Returns:
      ``None`` if every file matches, else why not (one line).
    """
    try:
        with open(os.path.join(step_dir, MANIFEST)) as f:
            files = json.load(f)["files"]
    except FileNotFoundError:
        return (
            f"no {MANIFEST} (written before checksums existed, or not finished); "
            "tljax.checkpoint.seal() trusts it"
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable {MANIFEST}: {e}"
    for rel, want in files.items():
        path = os.path.join(step_dir, rel)
        if not os.path.isfile(path):
            return f"{rel} is missing"
        size = os.path.getsize(path)
        if size != want["size"]:
            return f"{rel} has {size} bytes, the manifest says {want['size']}"
        if _sha256(path) != want["sha256"]:
            return f"{rel} fails its SHA-256 checksum"
    extra = sorted(set(_data_files(step_dir)) - set(files))
    if extra:
        return f"unexpected file(s) {extra}"
    return None


def seal(workdir: str) -> list[int]:
    """Writes manifests for the checkpoints of ``workdir`` that have none (e.g. written
    by an older tljax), so that a resume trusts them as they are now.

    Returns:
      The steps sealed.
    """
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    sealed = []
    for name in sorted(os.listdir(directory)):
        step_dir = os.path.join(directory, name)
        if name.isdigit() and os.path.isdir(step_dir):
            if not os.path.exists(os.path.join(step_dir, MANIFEST)):
                write_manifest(step_dir)
                sealed.append(int(name))
    return sorted(sealed)


class Checkpointer:
    """Saves and restores ``{"state": pytree, "meta": json}`` under ``<workdir>/checkpoints``.

    Args:
      workdir: the run directory.
      max_to_keep: how many recent checkpoints to keep.
      writable: check now that ``<workdir>/checkpoints`` can be written (a run); False
        to only read (e.g. the checkpoint of another run).

    Raises:
      CheckpointWriteError: ``<workdir>/checkpoints`` cannot be created or written.
    """

    def __init__(self, workdir: str, *, max_to_keep: int = 2, writable: bool = True):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        self.restored_step: int | None = None
        self._saving: int | None = None
        self._closed = self._reported = False
        quiet_orbax_errors()
        try:
            os.makedirs(self.directory, exist_ok=True)
            if writable:  # fail now, not at the first save an hour later
                with tempfile.TemporaryFile(dir=self.directory):
                    pass
        except OSError as e:
            what = "it is a file" if os.path.isfile(self.directory) else (e.strerror or e)
            raise CheckpointWriteError(
                f"Cannot create the checkpoint directory {self.directory}: {what}. Move it "
                "away, fix its permissions, or use another workdir."
            ) from e
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=True,
                # Synchronous creation: an error is raised by save(), not left in threads
                # that wait forever for a directory (the interpreter then never exits).
                async_options=ocp.AsyncOptions(
                    create_directories_asynchronously=False,
                    post_finalization_callback=self._seal_pending,
                ),
            ),
        )

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _seal_pending(self) -> None:
        """Orbax calls this (on its save thread, process 0 only) when a step's files are
        complete, before it renames the temporary directory into place."""
        step = self._saving
        for d in (self._step_dir(step) + _TMP_SUFFIX, self._step_dir(step)):
            if os.path.isdir(d):
                write_manifest(d)
                return
        raise CheckpointWriteError(f"Checkpoint step {step}: no directory in {self.directory}.")

    def _write_error(self, step, e: BaseException) -> CheckpointWriteError:
        self._reported = True
        if isinstance(e, CheckpointWriteError):
            return e
        good = [s for s in self.all_steps() if s != step]
        keep = f"step {max(good)} is the last complete one" if good else "none is complete"
        return CheckpointWriteError(
            f"Cannot write checkpoint step {step} in {self.directory}: "
            f"{type(e).__name__}: {e} ({keep}). Free disk space or fix permissions, then "
            "rerun to resume."
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts an asynchronous save of ``state`` (a pytree of arrays) and ``meta``.

        Raises:
          CheckpointWriteError: this save, or the previous one, failed.
        """
        try:
            self._manager.wait_until_finished()  # before _saving changes
        except Exception as e:
            raise self._write_error(self._saving, e) from e
        self._saving = int(step)
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
        except Exception as e:
            raise self._write_error(step, e) from e

    def _set_aside(self, steps: list[int]) -> None:
        """Moves rejected step directories to ``<workdir>/checkpoints.rejected`` (the run
        will write those steps again; nothing is deleted)."""
        if jax.process_index() == 0:
            aside = os.path.join(self.workdir, "checkpoints.rejected")
            for s in steps:
                dest, n = os.path.join(aside, str(s)), 1
                while os.path.exists(dest):
                    dest, n = os.path.join(aside, f"{s}.{n}"), n + 1
                try:
                    os.makedirs(aside, exist_ok=True)
                    os.replace(self._step_dir(s), dest)
                except OSError as e:
                    raise CheckpointError(
                        f"Cannot move rejected checkpoint step {s} out of {self.directory}: "
                        f"{e}. Delete or move {self._step_dir(s)} yourself."
                    ) from e
                log.warning("Moved the rejected checkpoint step %d to %s", s, dest)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("tljax_checkpoints_set_aside")
        self._manager.reload()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the newest checkpoint that verifies (or the given step) into the
        structure of ``target``.

        Steps newer than the one restored that fail verification are logged and moved to
        ``<workdir>/checkpoints.rejected``. :attr:`restored_step` is the step restored.

        Args:
          target: a pytree with the structure, shapes, dtypes (and shardings) to restore
            into; arrays or ``jax.ShapeDtypeStruct``.
          step: which step; default the newest that verifies.

        Returns:
          ``(state, meta)``.

        Raises:
          CheckpointError: if there is no checkpoint, none verifies (or ``step`` does
            not), or it cannot be read (e.g. written by a run with a different model or
            optimizer).
        """
        steps = sorted(self.all_steps(), reverse=True) if step is None else [int(step)]
        if not steps:
            raise CheckpointError(f"No checkpoint in {self.directory}.")
        rejected = []
        for s in steps:
            reason = verify(self._step_dir(s))
            if reason is None:
                break
            log.warning(
                "warning: checkpoint step %d in %s fails verification (%s); skipping it.",
                s,
                self.directory,
                reason,
            )
            rejected.append((s, reason))
        else:
            why = "; ".join(f"step {s}: {r}" for s, r in rejected)
            raise CheckpointError(
                f"No checkpoint in {self.directory} can be trusted ({why}). Nothing was "
                "changed; delete that directory to start over, or use another workdir."
            )
        if rejected:
            self._set_aside([r for r, _ in rejected])
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self._manager.restore(
                s,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f"Cannot restore checkpoint step {s} from {self.directory} "
                f"(available steps: {self.all_steps()}): {type(e).__name__}: {e}. "
                "It may come from a run with a different model or optimizer; delete that "
                "step's directory to resume from an earlier one, or use a new workdir."
            ) from e
        self.restored_step = s
        return out["state"], out["meta"]

    def wait(self) -> None:
        """Waits for the pending save.

        Raises:
          CheckpointWriteError: it failed.
        """
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._write_error(self._saving, e) from e

    def close(self) -> None:
        """Waits for the pending save and stops Orbax's threads, even after an error.

        Raises:
          CheckpointWriteError: the pending save failed (only logged when an exception is
            already propagating, which it would hide).
        """
        if self._closed:
            return
        self._closed = True
        error = None
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            error = e
        try:
            self._manager.close()
        except Exception as e:
            error = error or e
            # close() stopped at its own wait: close the parts that own threads.
            for part in (
                "_checkpointer",
                "_non_blocking_metadata_store",
                "_blocking_metadata_store",
                "_checkpoint_deleter",
            ):
                with contextlib.suppress(Exception):
                    getattr(self._manager, part).close()
        if error is None:
            return
        if self._reported or sys.exc_info()[1] is not None:
            # Raised already, or another exception is propagating: do not hide it.
            log.debug("Checkpoint error while closing after another error: %s", error)
            return
        raise self._write_error(self._saving, error) from error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_trained(workdir: str, step: int | None = None) -> tuple[dict, dict]:
    """The parameters and non-parameter state (e.g. BatchNorm statistics) of a finished or
    interrupted run, as ``({path: array}, {path: array})`` keyed by parameter path.

    Uses the newest checkpoint that verifies (or the given step).

    Raises:
      CheckpointError: if ``workdir`` has no readable checkpoint.
    """
    from tljax.optim import path_str

    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(directory):  # before Orbax, which would create it
        raise CheckpointError(
            f"No checkpoint in {directory} to initialise from; train that run first."
        )
    ckpt = Checkpointer(workdir, writable=False)
    try:
        steps = sorted(ckpt.all_steps(), reverse=True) if step is None else [int(step)]
        if not steps:
            raise CheckpointError(
                f"No checkpoint in {ckpt.directory} to initialise from; train that run first."
            )
        reasons = {s: verify(ckpt._step_dir(s)) for s in steps}
        good = [s for s in steps if reasons[s] is None]
        if not good:
            why = "; ".join(f"step {s}: {r}" for s, r in reasons.items())
            raise CheckpointError(f"No checkpoint in {ckpt.directory} can be trusted ({why}).")
        for s in steps[: steps.index(good[0])]:
            log.warning(
                "warning: checkpoint step %d in %s: %s; skipped.", s, ckpt.directory, reasons[s]
            )
        try:
            out = ckpt._manager.restore(
                good[0], args=ocp.args.Composite(state=ocp.args.StandardRestore())
            )
        except Exception as e:
            raise CheckpointError(
                f"Cannot read checkpoint step {good[0]} in {ckpt.directory}: {e}"
            ) from e
    finally:
        ckpt.close()
    tree = out["state"]

    def flat(t):
        return {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}

    return flat(tree["params"]), flat(tree["rest"])

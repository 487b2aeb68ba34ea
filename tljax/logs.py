"""Run logs: JSON lines and TensorBoard event files (TensorFlow-free) in the workdir.

``metrics.jsonl`` survives crashes: lines are appended one ``write`` each; on resume it is
cut back to the restored step by writing a new file and renaming it over the old one
(:func:`tljax.workdir.atomic_write`), so a crash during the cut leaves the old file; a
torn last line (a crash mid-append) is dropped with a warning naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os

from tljax.errors import UserFileError
from tljax.tb import SummaryWriter
from tljax.workdir import atomic_write

log = logging.getLogger("tljax")


class LogWriteError(UserFileError):
    """The metrics log cannot be written (read-only directory, disk full)."""


def _write_error(path: str, e: OSError) -> LogWriteError:
    return LogWriteError(
        f"Cannot write the metrics log {path}: {e.strerror or e}. Free disk space or fix "
        "permissions, then rerun to resume from the last checkpoint.",
    )


def _parse(path: str) -> tuple[list[dict], bool]:
    """The records of a JSONL file, and whether the file is clean (every line a record,
    ending in a newline). An unparsable last line (a crash mid-append) is dropped with a
    warning naming the file.

    Raises:
      ValueError: a line other than the last is not JSON (the message names file and line).
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip(b" \t\r")]
    rows, clean = [], not data or data.endswith(b"\n")
    for k, (n, ln) in enumerate(numbered):
        try:
            rows.append(json.loads(ln))
        except ValueError as e:
            if k != len(numbered) - 1:
                raise ValueError(f"{path}, line {n}, is not a JSON record: {e}.") from e
            clean = False
            log.warning(
                "warning: dropped the incomplete last line of %s (line %d: %r)",
                path,
                n,
                ln[:60].decode(errors="replace"),
            )
    return rows, clean


class MetricLogger:
    """Appends ``{"step": i, "kind": ..., **metrics}`` lines to ``<workdir>/metrics.jsonl``
    and writes the same scalars to TensorBoard under ``<workdir>/tensorboard``.

    Args:
      workdir: the run directory.
      tensorboard: also write TensorBoard event files.
      enabled: False makes every method a no-op (the processes other than process 0 of a
        multi-process run, which must not write the same files).

    Raises:
      LogWriteError: (from any method) the log cannot be written.
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if tensorboard:
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after ``step`` (a resumed run logs them again) and a torn
        last line; the file is replaced atomically."""
        if not self.enabled or not os.path.exists(self.path):
            return
        rows, clean = _parse(self.path)
        keep = [r for r in rows if r["step"] <= step]
        if len(keep) == len(rows) and clean:
            return
        try:
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        except OSError as e:
            raise _write_error(self.path, e) from e

    def write(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {
            k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()
        }
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), "kind": kind, **clean}) + "\n")
        except OSError as e:
            raise _write_error(self.path, e) from e
        if self._tb is not None:
            self._tb.add_scalars({f"{kind}/{k}": float(v) for k, v in metrics.items()}, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(workdir: str, kind: str | None = None) -> list[dict]:
    """The logged lines of a run, optionally only those of one ``kind`` (a torn last
    line is left out, with a warning)."""
    rows, _ = _parse(os.path.join(workdir, "metrics.jsonl"))
    return [r for r in rows if kind is None or r["kind"] == kind]

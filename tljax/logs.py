"""Run logs: JSON lines and TensorBoard event files (TensorFlow-free) in the workdir."""

from __future__ import annotations

import json
import math
import os

from tljax.tb import SummaryWriter


class MetricLogger:
    """Appends ``{"step": i, "kind": ..., **metrics}`` lines to ``<workdir>/metrics.jsonl``
    and writes the same scalars to TensorBoard under ``<workdir>/tensorboard``.

    Args:
      workdir: the run directory.
      tensorboard: also write TensorBoard event files.
      enabled: False makes every method a no-op (the processes other than process 0 of a
        multi-process run, which must not write the same files).
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
        """Drops lines logged after ``step`` (a resumed run logs them again)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [ln for ln in f if ln.strip() and json.loads(ln)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(lines)

    def write(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {
            k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()
        }
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "kind": kind, **clean}) + "\n")
        if self._tb is not None:
            self._tb.add_scalars({f"{kind}/{k}": float(v) for k, v in metrics.items()}, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(workdir: str, kind: str | None = None) -> list[dict]:
    """The logged lines of a run, optionally only those of one ``kind``."""
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        rows = [json.loads(ln) for ln in f if ln.strip()]
    return [r for r in rows if kind is None or r["kind"] == kind]

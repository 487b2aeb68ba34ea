"""Orbax checkpoints of a run: train state plus JSON metadata (input positions, config).

Paths are made absolute (Orbax requires it, and the error would surface only at
``wait_until_finished``). Saving is asynchronous; :meth:`Checkpointer.close` waits for
pending saves, so call it (or use the checkpointer as a context manager) before exit.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


class Checkpointer:
    """Saves and restores ``{"state": pytree, "meta": json}`` under ``<workdir>/checkpoints``.

    Args:
      workdir: the run directory.
      max_to_keep: how many recent checkpoints to keep.
    """

    def __init__(self, workdir: str, *, max_to_keep: int = 2):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts an asynchronous save of ``state`` (a pytree of arrays) and ``meta``."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the latest (or the given) checkpoint into the structure of ``target``.

        Args:
          target: a pytree with the structure, shapes, dtypes (and shardings) to restore
            into; arrays or ``jax.ShapeDtypeStruct``.
          step: which step; default the latest.

        Returns:
          ``(state, meta)``.

        Raises:
          CheckpointError: if there is no checkpoint or it cannot be read (corrupt,
            truncated, or written by a run with a different model/optimizer).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {self.directory}.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self._manager.restore(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f"Cannot restore checkpoint step {step} from {self.directory} "
                f"(available steps: {self.all_steps()}): {type(e).__name__}: {e}. "
                "It may be corrupt or come from a run with a different model or optimizer; "
                "delete that step's directory to resume from an earlier one, or use a new "
                "workdir."
            ) from e
        return out["state"], out["meta"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_trained(workdir: str, step: int | None = None) -> tuple[dict, dict]:
    """The parameters and non-parameter state (e.g. BatchNorm statistics) of a finished or
    interrupted run, as ``({path: array}, {path: array})`` keyed by parameter path.

    Raises:
      CheckpointError: if ``workdir`` has no readable checkpoint.
    """
    from tljax.optim import path_str

    ckpt = Checkpointer(workdir)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(
                f"No checkpoint in {ckpt.directory} to initialise from; train that run first."
            )
        try:
            out = ckpt._manager.restore(
                int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore())
            )
        except Exception as e:
            raise CheckpointError(
                f"Cannot read checkpoint step {step} in {ckpt.directory}: {e}"
            ) from e
    finally:
        ckpt.close()
    tree = out["state"]

    def flat(t):
        return {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}

    return flat(tree["params"]), flat(tree["rest"])

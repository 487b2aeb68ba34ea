"""Orbax's background checkpoint writes, made to fail as one error and never hang.

Three measures, installed by :func:`quiet_orbax_errors` (the checkpointer calls it):

* Orbax's own error logs from its threads are dropped (:class:`_DropOrbaxErrors`): each
  such error reaches the caller as one :class:`tljax.checkpoint.CheckpointError` line.
* Orbax's event loops cancel their unfinished tasks and let them settle, with a bound,
  before closing (:func:`_run_sync_settled` replaces its ``_run_sync_via_new_loop``).
* A TensorStore write that completes after its loop closed is not printed as an
  unraisable ``Event loop is closed`` traceback (:func:`_drop_closed_loop_callbacks`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import orbax.checkpoint as ocp

log = logging.getLogger("tljax")


class _DropOrbaxErrors(logging.Filter):
    """Drops Orbax's own error logs (tracebacks from its threads): every such error is
    raised to the caller as one :class:`CheckpointError` line, its cause chained."""

    _orbax = os.path.dirname(ocp.__file__)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.pathname.startswith(self._orbax))


def quiet_orbax_errors() -> None:
    """Installs (once each) the three measures of the module doc."""
    absl_logger = logging.getLogger("absl")  # Orbax logs through absl.logging
    if not any(isinstance(f, _DropOrbaxErrors) for f in absl_logger.filters):
        absl_logger.addFilter(_DropOrbaxErrors())
    _settle_orbax_loops()
    _drop_closed_loop_callbacks()


def _is_closed_loop_callback(unraisable) -> bool:
    """True for the one unraisable error :func:`_drop_closed_loop_callbacks` drops: a
    ``RuntimeError('Event loop is closed')`` raised by ``loop.call_soon_threadsafe``
    called from outside Python (a TensorStore thread finishing a future)."""
    if (
        unraisable.exc_type is not RuntimeError
        or str(unraisable.exc_value) != "Event loop is closed"
    ):
        return False
    tb = unraisable.exc_traceback
    if tb is None:
        return False
    # The outermost Python frame is call_soon_threadsafe itself: its caller is native code.
    return tb.tb_frame.f_code.co_name == "call_soon_threadsafe"


def _drop_closed_loop_callbacks() -> None:
    """Installs (once) a ``sys.unraisablehook`` that drops only
    :func:`_is_closed_loop_callback` errors (logged at debug level) and passes every
    other unraisable error to the hook that was installed before.

    Why: cancelling the writes still in flight (:func:`_run_sync_settled`) cancels their
    asyncio side at once, but a TensorStore write already running in its own thread may
    still finish after Orbax closed the loop; its completion callback then calls
    ``call_soon_threadsafe`` on the closed loop and TensorStore reports the error as
    unraisable. Nobody awaits that result any more (the run already failed with the
    first write's error), so the traceback is noise -- on a busy machine it came
    before the one-line error. Found by a race, so the settle alone could not be enough.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_tljax_closed_loop_filter", False):
        return

    def hook(unraisable):
        if _is_closed_loop_callback(unraisable):
            log.debug(
                "A write finished after its event loop closed (dropped): %r", unraisable.exc_value
            )
            return
        previous(unraisable)

    hook._tljax_closed_loop_filter = True
    sys.unraisablehook = hook


_SETTLE_S = 10.0  # seconds cancelled Orbax tasks may take to finish before the loop closes


def _run_sync_settled(coro):
    """Orbax's ``asyncio_utils._run_sync_via_new_loop`` (run ``coro`` on a new event loop,
    then close it), but cancels the loop's unfinished tasks and lets them finish before
    closing it, as ``asyncio.run`` does.

    Why: Orbax runs each background save part on such a loop (e.g. the array writes, in
    its thread ``array_type_handler``). When one write fails (a full disk), its
    ``asyncio.gather`` raises at once and Orbax closed the loop while the other writes
    still awaited TensorStore futures. Each of those, when done, called
    ``loop.call_soon_threadsafe`` on the closed loop from a TensorStore thread, and
    TensorStore printed the ``RuntimeError: Event loop is closed`` as an unraisable
    exception: a dozen tracebacks before our one-line error. Cancelling an awaited
    TensorStore future runs its callbacks at once, on the open loop, so none is left.

    The tasks are tracked by a task factory, not ``asyncio.all_tasks``: Orbax avoids
    that global, thread-unsafe set on purpose.
    """
    loop = asyncio.new_event_loop()
    unfinished: set[asyncio.Task] = set()

    def track(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        unfinished.add(task)
        task.add_done_callback(unfinished.discard)
        return task

    loop.set_task_factory(track)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = [t for t in unfinished if not t.done()]
            if pending:
                for t in pending:
                    t.cancel()
                # Bounded: a task that ignores its cancellation must not hang the run.
                loop.run_until_complete(asyncio.wait(pending, timeout=_SETTLE_S))
                for t in pending:  # after the error raised: its consequences, as a rule
                    if t.done() and not t.cancelled() and t.exception() is not None:
                        log.debug("Orbax task failed after another one: %r", t.exception())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _settle_orbax_loops() -> None:
    from orbax.checkpoint._src import asyncio_utils

    # Only where Orbax has this helper (older versions used asyncio.run, which settles).
    if getattr(asyncio_utils, "_run_sync_via_new_loop", None) not in (None, _run_sync_settled):
        asyncio_utils._run_sync_via_new_loop = _run_sync_settled

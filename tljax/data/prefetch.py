"""Prefetch to the device: a background thread makes the next batches while the step runs.

:class:`Prefetcher` calls ``produce()`` (host gather from the stream + ``device_put``
with the batch sharding) on a daemon thread and keeps up to ``depth`` finished batches
in a queue, so the host work and the transfer of batch ``i + 1`` overlap with the
compute of batch ``i``. Each batch travels with the stream state read right after it was
made; :meth:`Prefetcher.get_state` returns the state after the last batch *consumed*,
not after the ones waiting in the queue, so a checkpoint written between steps resumes
exactly where the run was. Only the thread touches the stream once it has started.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any


def _work(produce, get_state, out: queue.Queue, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            item = (produce(), get_state(), None)
        except BaseException as e:  # handed to the consumer, raised there
            item = (None, None, e)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if item[2] is not None:
            return


class Prefetcher:
    """An iterator over ``produce()`` results made ``depth`` ahead on a background thread.

    Args:
      produce: makes the next batch (e.g. ``device_put(next(stream), sharding)``).
      get_state: the stream's state after the batches made so far (e.g.
        ``stream.get_state``); called right after each ``produce()`` on the same thread.
      depth: batches made ahead; 0 makes each batch when it is asked for (no thread).

    Raises:
      ValueError: for a negative ``depth``.
    """

    def __init__(self, produce: Callable[[], Any], get_state: Callable[[], Any], depth: int = 2):
        if depth < 0:
            raise ValueError(f"Prefetcher depth must be >= 0, got {depth}.")
        self._produce, self._get_state, self.depth = produce, get_state, int(depth)
        self._state = get_state()
        self._queue: queue.Queue = queue.Queue(maxsize=max(self.depth, 1))
        self._stop = threading.Event()
        self._thread = None
        if self.depth:
            args = (produce, get_state, self._queue, self._stop)
            self._thread = threading.Thread(
                target=_work, args=args, name="tljax-prefetch", daemon=True
            )
            self._thread.start()
        # The thread holds no reference to self: an abandoned prefetcher (e.g. the loop
        # raised) is collected, and this stops its thread.
        weakref.finalize(self, self._stop.set)

    def __iter__(self):
        return self

    def __next__(self):
        if self._thread is None:
            batch = self._produce()
            self._state = self._get_state()
            return batch
        if self._stop.is_set():
            raise RuntimeError("Prefetcher is closed.")
        batch, state, error = self._queue.get()
        if error is not None:
            self.close()
            raise error
        self._state = state
        return batch

    def get_state(self) -> Any:
        """The stream state after the batches returned so far."""
        return self._state

    def close(self) -> None:
        """Stops the thread and drops the batches made ahead."""
        self._stop.set()
        if self._thread is not None:
            while True:  # unblock a put() waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

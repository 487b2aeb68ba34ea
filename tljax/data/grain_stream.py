"""Training batches decoded on grain worker threads: for domains that do not fit in memory.

:class:`GrainPairStream` has the interface of :class:`tljax.data.stream.DomainPairStream`
(``next()``, ``get_state()``, ``set_state()``, the same constructor) and yields the *same*
batches: batch ``k`` of epoch ``e`` holds the indices of the permutation
``np.random.default_rng([seed, domain_id, e])`` that the in-memory stream takes, sorted,
and the incomplete last batch of an epoch is dropped. Only where the images come from
differs: a split's ``x`` may be a :class:`~tljax.data.benchmarks.loader.StreamedImages`
(``data.stream=True``: records read from TFDS's ``array_record`` random-access data
source and JPEG-decoded and resized on access) or an in-memory array.

Per domain the pipeline is a grain ``MapDataset`` over batch positions, mapped to the
decoded batch (its indices from :class:`EpochOrder`, a pure function of ``(seed, domain,
position)``), turned into an ``IterDataset`` whose ``ReadOptions(num_threads=...)``
decodes batches ahead on a thread pool (PIL releases the GIL while decoding and
resizing), optionally spread over worker processes (``mp_prefetch``). The whole state is
the batch ``position`` (one integer, stored in checkpoints as the in-memory stream's):
:meth:`GrainPairStream.set_state` rebuilds each pipeline from that position, so kill +
resume reproduces the uninterrupted run, and a checkpoint of either stream resumes in
the other.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref

import numpy as np

from tljax.data.core import Split, Task

_LENGTH = 2**62  # elements of the (endless) example order; grain indexes it lazily
_OPEN: weakref.WeakSet = weakref.WeakSet()  # streams with a live grain iterator


@atexit.register
def _close_all() -> None:
    # Before the interpreter tears modules down: grain's iterators then fail to close
    # themselves (noisy tracebacks, leaked shared memory of worker processes).
    for stream in list(_OPEN):
        stream.close()


class EpochOrder:
    """The dataset index of every element of an endless stream of fixed-size batches.

    Element ``j`` is example ``perm_e[r]`` with ``e, r = divmod(j, batches_per_epoch *
    batch_size)`` and ``perm_e`` epoch ``e``'s permutation (the first ``batches_per_epoch
    * batch_size`` entries, each batch's slice sorted), as
    :meth:`tljax.data.stream.DomainStream.indices`. Thread-safe (grain reads it from
    its worker threads).
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, domain_id: int):
        self.n, self.batch_size = int(n), int(batch_size)
        self.seed, self.domain_id = int(seed), int(domain_id)
        self.batches_per_epoch = self.n // self.batch_size
        self.per_epoch = self.batches_per_epoch * self.batch_size
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}

    def epoch(self, e: int) -> np.ndarray:
        """Epoch ``e``'s order: ``per_epoch`` indices, sorted within each batch."""
        with self._lock:
            order = self._cache.get(e)
            if order is None:
                perm = np.random.default_rng([self.seed, self.domain_id, e]).permutation(self.n)
                order = np.sort(perm[: self.per_epoch].reshape(-1, self.batch_size), axis=1)
                order = order.reshape(-1)
                if len(self._cache) >= 2:  # the current epoch and the next suffice
                    self._cache.pop(min(self._cache))
                self._cache[e] = order
            return order

    def __getstate__(self) -> dict:  # pickled into grain worker processes
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_cache")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _cache={})

    def __len__(self) -> int:
        return _LENGTH

    def __getitem__(self, j: int) -> int:
        e, r = divmod(int(j), self.per_epoch)
        return int(self.epoch(e)[r])


class _BatchReader:
    """Reads the batch at one position: its indices from the order, each example decoded.

    A plain class (not a closure) so that grain can pickle it into worker processes."""

    def __init__(self, split: Split, order: EpochOrder, with_labels: bool):
        self.x, self.y, self.order, self.with_labels = split.x, split.y, order, with_labels

    def __call__(self, position: int) -> dict[str, np.ndarray]:
        bs = self.order.batch_size
        idx = [self.order[j] for j in range(position * bs, (position + 1) * bs)]
        example = getattr(self.x, "example", None)
        if example is None:  # an in-memory array
            out = {"image": np.asarray(self.x[idx])}
        else:
            out = {"image": np.stack([example(i) for i in idx])}
        if self.with_labels:
            out["label"] = self.y[idx].astype(np.int32)
        return out


class GrainDomainStream:
    """Shuffled fixed-size batches of one split, decoded by grain worker threads (or
    processes).

    The grain pipeline is ``MapDataset.range(position, ∞).map(read batch)`` (a batch is
    one element, so batches hold exactly the in-memory stream's examples whatever the
    parallelism), ``to_iter_dataset(ReadOptions(num_threads))`` (batches decoded ahead,
    one per thread), and with ``num_workers > 0`` also ``mp_prefetch`` (worker processes,
    each with its threads, for when the GIL limits threads). Seeking rebuilds it from the
    position: no grain iterator state is needed to resume exactly.

    Args:
      split: the data (``x`` an array or a :class:`StreamedImages`).
      batch_size: examples per batch; must not exceed the split size.
      seed, domain_id: the shuffling (as :class:`tljax.data.stream.DomainStream`).
      with_labels: whether batches hold ``"label"``.
      num_threads: batches decoded at once per process (default: the CPU count).
      num_workers: worker processes (0: decode in this process).
      buffer: batches decoded ahead (default: ``2 * num_threads``).
      name: used in error messages.

    Raises:
      ValueError: if the split is smaller than one batch, or a negative count.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        seed: int,
        domain_id: int,
        with_labels: bool = True,
        num_threads: int | None = None,
        num_workers: int = 0,
        buffer: int | None = None,
        name: str = "domain",
    ):
        if batch_size < 1 or batch_size > len(split):
            raise ValueError(
                f"batch_size={batch_size} for {name!r} must be between 1 and its "
                f"{len(split)} training examples."
            )
        if num_workers < 0 or (num_threads is not None and num_threads < 1):
            raise ValueError(
                f"num_threads must be >= 1 (or None) and num_workers >= 0, got "
                f"{num_threads} and {num_workers}."
            )
        self.batch_size = int(batch_size)
        self.order = EpochOrder(len(split), batch_size, seed=seed, domain_id=domain_id)
        self.batches_per_epoch = self.order.batches_per_epoch
        self.num_threads = int(num_threads or os.cpu_count() or 1)
        self.num_workers = int(num_workers)
        self.buffer = int(buffer or 2 * self.num_threads)
        self._read = _BatchReader(split, self.order, with_labels)
        self._iter = None
        self._position = 0

    def dataset(self, position: int):
        """The grain ``IterDataset`` of the batches from ``position`` on."""
        import grain  # here: importing grain takes ~2 s, paid only by streaming runs

        ds = grain.MapDataset.range(int(position), _LENGTH // self.batch_size).map(self._read)
        ds = ds.to_iter_dataset(grain.ReadOptions(self.num_threads, self.buffer))
        if self.num_workers:
            from absl import flags

            if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults)
                flags.FLAGS.mark_as_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers))
        return ds

    def seek(self, position: int) -> None:
        """The next batch will be the one at ``position``; decoding ahead starts lazily."""
        self.close()  # a fresh iterator: the old one's read-ahead is dropped
        self._position = int(position)

    def close(self) -> None:
        """Stops the decoding threads (and worker processes); :meth:`__next__` restarts."""
        it, self._iter = self._iter, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iter is None:
            self._iter = iter(self.dataset(self._position))
            _OPEN.add(self)
        batch = next(self._iter)
        if self.num_workers:  # out of grain's shared memory, which a kept batch would pin
            batch = {k: np.array(v) for k, v in batch.items()}
        self._position += 1
        return batch


class GrainPairStream:
    """:class:`tljax.data.stream.DomainPairStream`'s batches through grain pipelines.

    Args:
      task: the transfer task; trains on ``source.train`` and ``target.train``.
      batch_size: examples per domain per batch.
      seed: shuffling seed.
      position: where to start (a restored checkpoint's position).
      target_labeled: labelled target examples; batches then also hold
        ``"target_labeled": {image, label}``.
      target_labeled_batch_size: its batch size (default: ``batch_size``).
      num_threads: batches decoded at once per domain (default: the CPU count).
      num_workers: grain worker processes per domain (0: threads of this process).
    """

    def __init__(
        self,
        task: Task,
        batch_size: int,
        *,
        seed: int,
        position: int = 0,
        target_labeled: Split | None = None,
        target_labeled_batch_size: int | None = None,
        num_threads: int | None = None,
        num_workers: int = 0,
    ):
        def stream(split, bs, domain_id, name, with_labels=True):
            return GrainDomainStream(
                split,
                bs,
                seed=seed,
                domain_id=domain_id,
                with_labels=with_labels,
                num_threads=num_threads,
                num_workers=num_workers,
                name=name,
            )

        self.streams = {
            "source": stream(task.source.train, batch_size, 0, task.source.name),
            "target": stream(task.target.train, batch_size, 1, task.target.name, False),
        }
        if target_labeled is not None:
            self.streams["target_labeled"] = stream(
                target_labeled,
                target_labeled_batch_size or batch_size,
                2,
                f"{task.target.name} (labelled)",
            )
        self.set_state({"position": position})

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, dict[str, np.ndarray]]:
        batch = {name: next(s) for name, s in self.streams.items()}
        self.position += 1
        return batch

    def get_state(self) -> dict[str, int]:
        return {"position": self.position}

    def close(self) -> None:
        """Stops every domain's decoding (a later batch restarts it where it was)."""
        for s in self.streams.values():
            s.close()

    def set_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])
        for s in self.streams.values():
            s.seek(self.position)

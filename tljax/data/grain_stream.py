"""Training batches decoded on grain worker threads: for domains that do not fit in memory.

:class:`GrainPairStream` has the interface of :class:`tljax.data.stream.DomainPairStream`
(``next()``, ``get_state()``, ``set_state()``, the same constructor) and yields the *same*
batches: batch ``k`` of epoch ``e`` holds the indices of the permutation
``np.random.default_rng([seed, domain_id, e])`` that the in-memory stream takes, sorted,
and the incomplete last batch of an epoch is dropped. Only where the images come from
differs: a split's ``x`` may be a :class:`~tljax.data.benchmarks.loader.StreamedImages`
(``data.stream=True``: records read from TFDS's ``array_record`` random-access data
source and JPEG-decoded and resized on access) or an in-memory array.

Per domain the pipeline is a grain ``MapDataset`` over the example order (one element =
one dataset index, a pure function of ``(seed, domain, element)``), mapped to the decoded
example, turned into an ``IterDataset`` whose ``ReadOptions(num_threads=...)`` decodes
elements ahead on a thread pool (PIL releases the GIL while decoding and resizing), and
batched. The whole state is the batch ``position`` (one integer, stored in checkpoints as
the in-memory stream's): :meth:`GrainPairStream.set_state` seeks each grain iterator with
``set_state({"next_index": position * batch_size})``, so kill + resume reproduces the
uninterrupted run, and a checkpoint of either stream resumes in the other.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from tljax.data.core import Split, Task

_LENGTH = 2**62  # elements of the (endless) example order; grain indexes it lazily


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

    def __len__(self) -> int:
        return _LENGTH

    def __getitem__(self, j: int) -> int:
        e, r = divmod(int(j), self.per_epoch)
        return int(self.epoch(e)[r])


def _reader(split: Split, with_labels: bool):
    x, y = split.x, split.y
    example = getattr(x, "example", None) or x.__getitem__

    def read(i: int) -> dict:
        out = {"image": np.asarray(example(i))}
        if with_labels:
            out["label"] = np.int32(y[i])
        return out

    return read


class GrainDomainStream:
    """Shuffled fixed-size batches of one split, decoded on grain worker threads.

    Args:
      split: the data (``x`` an array or a :class:`StreamedImages`).
      batch_size: examples per batch; must not exceed the split size.
      seed, domain_id: the shuffling (as :class:`tljax.data.stream.DomainStream`).
      with_labels: whether batches hold ``"label"``.
      num_threads: decoding threads (default: the CPU count).
      buffer: examples decoded ahead (default: 4 batches).
      name: used in error messages.

    Raises:
      ValueError: if the split is smaller than one batch.
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
        buffer: int | None = None,
        name: str = "domain",
    ):
        if batch_size < 1 or batch_size > len(split):
            raise ValueError(
                f"batch_size={batch_size} for {name!r} must be between 1 and its "
                f"{len(split)} training examples."
            )
        import grain  # here: importing grain takes ~2 s, paid only by streaming runs

        self.batch_size = int(batch_size)
        self.order = EpochOrder(len(split), batch_size, seed=seed, domain_id=domain_id)
        self.batches_per_epoch = self.order.batches_per_epoch
        options = grain.ReadOptions(
            num_threads=num_threads or os.cpu_count() or 1,
            prefetch_buffer_size=buffer or 4 * self.batch_size,
        )
        self.dataset = (
            grain.MapDataset.source(self.order)
            .map(_reader(split, with_labels))
            .to_iter_dataset(options)
            .batch(self.batch_size, drop_remainder=True)
        )
        self._iter = None
        self._position = 0

    def seek(self, position: int) -> None:
        """The next batch will be the one at ``position``; decoding ahead starts lazily."""
        self._position = int(position)
        self._iter = None  # a fresh iterator: the old one's read-ahead is dropped

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iter is None:
            self._iter = iter(self.dataset)
            self._iter.set_state({"next_index": self._position * self.batch_size})
        batch = next(self._iter)
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
      num_threads: decoding threads per domain (default: the CPU count).
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
    ):
        def stream(split, bs, domain_id, name, with_labels=True):
            return GrainDomainStream(
                split,
                bs,
                seed=seed,
                domain_id=domain_id,
                with_labels=with_labels,
                num_threads=num_threads,
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

    def set_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])
        for s in self.streams.values():
            s.seek(self.position)

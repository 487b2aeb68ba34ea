"""Seeded, checkpointable batch streams over in-memory domains.

A batch is a pure function of ``(seed, domain, position)``: epoch ``e`` uses the
permutation drawn from ``np.random.default_rng([seed, domain_id, e])``, and batch ``k``
of that epoch takes the next ``batch_size`` indices (the incomplete last batch of an
epoch is dropped, as in the reference code). The whole state of a stream is its
``position``, which the checkpoint stores, so a resumed run sees exactly the batches an
uninterrupted run would have seen.

The target stream of a :class:`DomainPairStream` yields images only: target labels
never reach a method. A labelled target subset (semi-supervised adaptation) is a separate
stream, ``batch["target_labeled"]``, drawn from examples that are not in the unlabelled
target split (:func:`tljax.data.core.split_target_labels`).
"""

from __future__ import annotations

import numpy as np

from tljax.data.core import Split, Task


class DomainStream:
    """Shuffled fixed-size batches of one split, addressed by position.

    Args:
      split: the data.
      batch_size: examples per batch; must not exceed the split size.
      seed: shuffling seed.
      domain_id: distinguishes the permutations of several streams with one seed.
      name: used in error messages.

    Raises:
      ValueError: if the split is smaller than one batch.
    """

    def __init__(
        self, split: Split, batch_size: int, *, seed: int, domain_id: int, name: str = "domain"
    ):
        if batch_size < 1 or batch_size > len(split):
            raise ValueError(
                f"batch_size={batch_size} for {name!r} must be between 1 and its "
                f"{len(split)} training examples."
            )
        self.split = split
        self.batch_size = batch_size
        self.seed = int(seed)
        self.domain_id = int(domain_id)
        self.batches_per_epoch = len(split) // batch_size
        self._perm_epoch = -1
        self._perm = None

    def indices(self, position: int) -> np.ndarray:
        """Indices of the batch at ``position`` (0-based, across epochs)."""
        epoch, k = divmod(int(position), self.batches_per_epoch)
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, self.domain_id, epoch])
            self._perm = rng.permutation(len(self.split))
            self._perm_epoch = epoch
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]

    def batch(self, position: int, *, with_labels: bool = True) -> dict[str, np.ndarray]:
        idx = np.sort(self.indices(position))  # sorted: contiguous reads, same set
        out = {"image": self.split.x[idx]}
        if with_labels:
            out["label"] = self.split.y[idx].astype(np.int32)
        return out


class DomainPairStream:
    """Iterator of ``{"source": {image, label}, "target": {image}}`` batches.

    Args:
      task: the transfer task; trains on ``source.train`` and ``target.train``.
      batch_size: examples per domain per batch.
      seed: shuffling seed.
      position: where to start (a restored checkpoint's position).
      target_labeled: labelled target examples (kept out of ``task.target.train``);
        when given, batches also hold ``"target_labeled": {image, label}``.
      target_labeled_batch_size: its batch size (default: ``batch_size``).
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
    ):
        self.source = DomainStream(
            task.source.train, batch_size, seed=seed, domain_id=0, name=task.source.name
        )
        self.target = DomainStream(
            task.target.train, batch_size, seed=seed, domain_id=1, name=task.target.name
        )
        self.target_labeled = None
        if target_labeled is not None:
            self.target_labeled = DomainStream(
                target_labeled,
                target_labeled_batch_size or batch_size,
                seed=seed,
                domain_id=2,
                name=f"{task.target.name} (labelled)",
            )
        self.position = int(position)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, dict[str, np.ndarray]]:
        batch = {
            "source": self.source.batch(self.position),
            "target": self.target.batch(self.position, with_labels=False),
        }
        if self.target_labeled is not None:
            batch["target_labeled"] = self.target_labeled.batch(self.position)
        self.position += 1
        return batch

    def get_state(self) -> dict[str, int]:
        return {"position": self.position}

    def set_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])

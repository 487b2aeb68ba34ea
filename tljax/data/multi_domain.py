"""Tasks with several labelled training domains: domain generalization and multi-source DA.

A :class:`MultiDomainTask` is a :class:`~tljax.data.core.Task` whose labelled data comes
from several named domains (``sources``) of a domain set
(:mod:`tljax.data.domain_sets`). Its names are

* ``dg/<set>`` — **domain generalization** (DomainBed's protocol, Gulrajani & Lopez-Paz,
  ICLR 2021): train on every domain but the held-out ``test`` one (option ``test=<name>``,
  default: the last domain); no data of the held-out domain is ever drawn in training.
  Option ``val=<name>`` holds out a second domain for leave-one-domain-out
  cross-validation (its accuracy is logged as ``val_domain_acc``).
* ``msda/<set>`` — **multi-source domain adaptation**: the labelled ``sources`` plus the
  unlabelled training split of ``target=<name>`` (default: the last domain), as in
  single-source DA.

Every domain of a set comes with DomainBed's split: ``train`` = the 80% "in" split,
``test`` = the 20% "out" split. The task maps them as DomainBed's selection rules read
them:

* ``task.sources[k].train``: what domain ``k`` trains on; ``task.sources[k].test``: its
  out split, the training-domain validation set (selection rule ``train_domain_val``).
* DG: ``task.target.train`` is the held-out domain's *out* split (20%, only read by the
  test-domain "oracle" rule) and ``task.target.test`` its *in* split (80%), on which
  DomainBed reports test accuracy; so ``target_test_acc`` is DomainBed's number.
* MSDA: ``task.target`` is the target domain as it comes (train drawn unlabelled, test
  reported), as in :mod:`tljax.data.tasks`.
* ``task.source`` is the pooled training domains (train and test splits concatenated in
  domain order), so every single-source method trains on a multi-domain task unchanged: a
  source-only run is DomainBed's ERM and DANN on ``msda/`` is the "source-combine" baseline.

Batches (:class:`MultiDomainStream`) hold ``batch_size`` examples *per training domain*,
domain-major: ``batch["source"]["image"]`` is ``(K·B, ...)``, domain ``k`` in rows
``k·B … (k+1)·B − 1``, with ``batch["source"]["domain"]`` the domain index of each row;
``batch["target"]`` (MSDA only) holds ``B`` unlabelled target images. A method sees the
number of domains ``K`` in ``ModelInfo.num_domains`` and splits per domain with
:func:`tljax.methods._domains.per_domain`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tljax.data import tasks as _tasks
from tljax.data.core import Domain, Split, Task
from tljax.data.stream import DomainStream

SETTINGS = ("dg", "msda")
# Options of the task name itself; all others go to the domain set's builder.
OPTIONS = {"dg": ("test", "val"), "msda": ("target",)}


@dataclasses.dataclass(frozen=True)
class MultiDomainTask(Task):
    """Several labelled training domains and one domain to generalise or adapt to.

    Attributes (besides :class:`Task`'s):
      sources: the labelled training domains, in the domain set's order.
      setting: ``"dg"`` (the target is never seen in training) or ``"msda"`` (its train
        split is drawn unlabelled).
      val_domain: DG only, a second held-out domain for leave-one-domain-out
        cross-validation (never trained on), or ``None``.
      domain_set: the name of the domain set.
    """

    sources: tuple[Domain, ...] = ()
    setting: str = "dg"
    val_domain: Domain | None = None
    domain_set: str = ""

    @property
    def num_domains(self) -> int:
        return len(self.sources)

    def validate(self) -> None:
        super().validate()
        if self.setting not in SETTINGS:
            raise ValueError(f"Unknown setting {self.setting!r}; valid: {SETTINGS}.")
        if len(self.sources) < 1:
            raise ValueError(f"Task {self.name!r} has no training domain.")
        shape = self.source.train.x.shape[1:]
        for d in (*self.sources, *([self.val_domain] if self.val_domain else [])):
            for s in (d.train, d.test):
                if s.x.shape[1:] != shape:
                    raise ValueError(
                        f"Task {self.name!r}: domain {d.name!r} has inputs {s.x.shape[1:]}, "
                        f"the others {shape}."
                    )

    def map_splits(self, fn) -> MultiDomainTask:
        """The task with ``fn(split)`` applied to every split of every domain (the pooled
        source rebuilt from the mapped domains)."""

        def domain(d: Domain | None) -> Domain | None:
            if d is None:
                return None
            train = fn(d.train)
            return Domain(d.name, train, train if d.test is d.train else fn(d.test))

        sources = tuple(domain(d) for d in self.sources)
        return dataclasses.replace(
            self,
            source=pooled(sources),
            sources=sources,
            target=domain(self.target),
            val_domain=domain(self.val_domain),
        )


def pooled(domains: tuple[Domain, ...]) -> Domain:
    """One domain holding the given domains' train (and test) splits, in order."""

    def cat(splits: list[Split]) -> Split:
        return Split(np.concatenate([s.x for s in splits]), np.concatenate([s.y for s in splits]))

    return Domain(
        "+".join(d.name for d in domains),
        cat([d.train for d in domains]),
        cat([d.test for d in domains]),
    )


def parse(name: str) -> tuple[str, str] | None:
    """``"dg/rotated_digits"`` → ``("dg", "rotated_digits")``; None for other names."""
    if not isinstance(name, str) or "/" not in name:
        return None
    setting, base = name.split("/", 1)
    if setting not in SETTINGS or not base:
        return None
    return setting, base


def _pick(names: tuple[str, ...], value, what: str, set_name: str) -> int:
    value = str(value)
    if value not in names:
        raise ValueError(
            f"{what}={value!r} is not a domain of {set_name!r}; its domains: {list(names)}."
        )
    return names.index(value)


def build(
    setting: str,
    set_name: str,
    *,
    data_seed: int = 0,
    image_size: int | None = None,
    test: str | None = None,
    val: str | None = None,
    target: str | None = None,
    **options,
) -> MultiDomainTask:
    """Builds ``dg/<set_name>`` or ``msda/<set_name>`` (see the module docstring).

    Raises:
      ValueError: an unknown setting or domain, ``val`` equal to ``test``, or fewer than
        one training domain left.
    """
    from tljax.data import domain_sets

    if setting not in SETTINGS:
        raise ValueError(f"Unknown multi-domain setting {setting!r}; valid: {SETTINGS}.")
    ds = domain_sets.get_domain_set(set_name, data_seed=data_seed, image_size=image_size, **options)
    names = tuple(d.name for d in ds.domains)
    held = names[-1]
    if setting == "dg":
        t = _pick(names, held if test in (None, "") else test, "test", set_name)
        v = None if val in (None, "") else _pick(names, val, "val", set_name)
        if v == t:
            raise ValueError(f"val={val!r} must differ from test={names[t]!r}.")
        out = {t} | ({v} if v is not None else set())
        held_domain = ds.domains[t]
        # DomainBed: reported on the held-out domain's in split (80%); the oracle selects
        # on its out split (20%).
        tgt = Domain(held_domain.name, held_domain.test, held_domain.train)
        suffix = f":test={names[t]}" + (f",val={names[v]}" if v is not None else "")
    else:
        t = _pick(names, held if target in (None, "") else target, "target", set_name)
        v, out, tgt = None, {t}, ds.domains[t]
        suffix = f":target={names[t]}"
    sources = tuple(d for i, d in enumerate(ds.domains) if i not in out)
    if not sources:
        raise ValueError(f"{setting}/{set_name}: no training domain is left after {suffix}.")
    return MultiDomainTask(
        name=f"{setting}/{set_name}{suffix}",
        source=pooled(sources),
        target=tgt,
        num_classes=ds.num_classes,
        sources=sources,
        setting=setting,
        val_domain=None if v is None else ds.domains[v],
        domain_set=set_name,
    )


@functools.cache
def _factory_for(setting: str):
    def factory(name: str, *, data_seed: int, image_size: int | None = None, **options):
        return build(
            setting, name.split("/", 1)[1], data_seed=data_seed, image_size=image_size, **options
        )

    return factory


def resolve(name: str) -> _tasks.RegisteredTask | None:
    """The resolver registered in :mod:`tljax.data.tasks` for ``dg/<set>`` and
    ``msda/<set>``."""
    parsed = parse(name)
    if parsed is None:
        return None
    from tljax.data import domain_sets

    setting, base = parsed
    if base not in domain_sets.domain_set_names():
        raise ValueError(
            f"Unknown domain set {base!r} in task {name!r}; valid: "
            f"{domain_sets.domain_set_names()}."
        )
    options = OPTIONS[setting] + tuple(domain_sets.domain_set_options(base))
    return _tasks.RegisteredTask(_factory_for(setting), options, takes_image_size=True)


class MultiDomainStream:
    """Iterator of multi-domain batches (see the module docstring), addressed by position.

    Args:
      task: a :class:`MultiDomainTask`.
      batch_size: examples per training domain (and of the MSDA target) per batch.
      seed: shuffling seed.
      position: where to start (a restored checkpoint's position).
    """

    def __init__(self, task: MultiDomainTask, batch_size: int, *, seed: int, position: int = 0):
        self.streams = [
            DomainStream(d.train, batch_size, seed=seed, domain_id=k, name=d.name)
            for k, d in enumerate(task.sources)
        ]
        self.target = None
        if task.setting == "msda":
            self.target = DomainStream(
                task.target.train,
                batch_size,
                seed=seed,
                domain_id=len(task.sources),
                name=task.target.name,
            )
        self.domain = np.repeat(np.arange(len(self.streams), dtype=np.int32), batch_size)
        self.position = int(position)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, dict[str, np.ndarray]]:
        parts = [s.batch(self.position) for s in self.streams]
        batch = {
            "source": {
                "image": np.concatenate([p["image"] for p in parts]),
                "label": np.concatenate([p["label"] for p in parts]),
                "domain": self.domain,
            }
        }
        if self.target is not None:
            batch["target"] = self.target.batch(self.position, with_labels=False)
        self.position += 1
        return batch

    def get_state(self) -> dict[str, int]:
        return {"position": self.position}

    def set_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])


def standardize_multi(task: MultiDomainTask) -> tuple[MultiDomainTask, np.ndarray, np.ndarray]:
    """:func:`tljax.data.core.standardize` for a multi-domain task: every split of every
    domain standardised with the pooled training domains' per-channel statistics (the
    held-out domain's are never used)."""
    x = task.source.train.x
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = np.maximum(x.std(axis=axes, dtype=np.float64), 1e-6)
    out = task.map_splits(lambda s: Split(((s.x - mean) / std).astype(np.float32), s.y))
    return out, mean.astype(np.float32), std.astype(np.float32)

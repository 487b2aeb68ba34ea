"""Published numbers to quote beside tljax results (``tljax/references.json``).

Every number carries its source (TLlib's README and docs, the DANN paper), the metric
(accuracy, or VisDA's mean class accuracy) and the benchmark's backbone. Task names follow
:mod:`tljax.data.benchmarks` (``office31/amazon->office31/webcam``, ``svhn->mnist``);
the usual short forms (``A->W``, ``office31:A->W``, ``Ar->Cl``, ``SVHN→MNIST``) are
accepted too. The offline tasks of :mod:`tljax.data.tasks` have no published numbers.
"""

from __future__ import annotations

import functools
import json
import os
from typing import NamedTuple

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references.json")

_METHOD_ALIASES = {
    "erm": "source_only",
    "source": "source_only",
    "source only": "source_only",
    "source-only": "source_only",
}


class Reference(NamedTuple):
    """One published number.

    Attributes:
      value: accuracy in %.
      metric: ``"accuracy"`` or ``"mean_class_accuracy"``.
      source: key into :attr:`References.sources`.
      short: short label of the source for tables (``"TLlib"``, ``"DANN paper"``).
      benchmark: e.g. ``"office31"``.
    """

    value: float
    metric: str
    source: str
    short: str
    benchmark: str


class References:
    """The published numbers of one JSON file, indexed by (task, method).

    Args:
      data: the parsed JSON (see ``tljax/references.json``).
    """

    def __init__(self, data: dict):
        self.sources: dict[str, dict] = data["sources"]
        self.benchmarks: dict[str, dict] = data["benchmarks"]
        self.analogues: dict[str, str] = data.get("offline_analogues", {})
        self._by_key: dict[tuple[str, str, str], list[Reference]] = {}
        for e in data["results"]:
            if e["source"] not in self.sources:
                raise ValueError(
                    f"Reference {e} names unknown source {e['source']!r}; valid: "
                    f"{sorted(self.sources)}."
                )
            ref = Reference(
                float(e["value"]),
                e.get("metric", "accuracy"),
                e["source"],
                self.sources[e["source"]]["short"],
                e["benchmark"],
            )
            self._by_key.setdefault((e["benchmark"], e["task"], e["method"]), []).append(ref)
        self._aliases = self._task_aliases()

    def _task_aliases(self) -> dict[str, str]:
        out = {}
        for bench, info in self.benchmarks.items():
            short = {v: k for k, v in info.get("aliases", {}).items()}
            for task in info["tasks"]:
                out[task] = task
                src, dst = task.split("->")
                s, d = src.split("/")[-1], dst.split("/")[-1]
                names = [f"{s}->{d}"]
                if s in short and d in short:
                    names.append(f"{short[s]}->{short[d]}")
                for n in names:
                    out.setdefault(n.lower(), task)
                    out.setdefault(f"{bench}:{n}".lower(), task)
        return out

    def canonical_task(self, task: str) -> str:
        """The benchmark name of ``task`` (``"A→W"`` → ``"office31/amazon->office31/webcam"``);
        unknown names are returned unchanged."""
        key = task.strip().replace("→", "->").replace(" ", "")
        return self._aliases.get(key, self._aliases.get(key.lower(), task))

    def benchmark_of(self, task: str) -> str | None:
        """The benchmark whose task list holds ``task``, or ``None``."""
        task = self.canonical_task(task)
        for bench, info in self.benchmarks.items():
            if task in info["tasks"]:
                return bench
        return None

    def lookup(self, task: str, method: str) -> list[Reference]:
        """Published numbers for ``method`` on ``task`` (empty when there are none)."""
        method = _METHOD_ALIASES.get(method.lower(), method.lower())
        task = self.canonical_task(task)
        bench = self.benchmark_of(task)
        return list(self._by_key.get((bench, task, method), [])) if bench else []

    def average(self, tasks: list[str], method: str) -> list[Reference]:
        """Published averages for ``method`` over ``tasks``.

        A benchmark's own published average is used when ``tasks`` are exactly its task
        list; otherwise the mean of the per-task numbers of one source, when that source
        has all of ``tasks``.
        """
        method = _METHOD_ALIASES.get(method.lower(), method.lower())
        canon = {self.canonical_task(t) for t in tasks}
        for bench, info in self.benchmarks.items():
            if canon == set(info["tasks"]) and (bench, "avg", method) in self._by_key:
                return list(self._by_key[(bench, "avg", method)])
        per_task = [self.lookup(t, method) for t in canon]
        if not per_task or not all(per_task):
            return []
        out = []
        for src in {r.source for r in per_task[0]}:
            vals = [next((r for r in refs if r.source == src), None) for refs in per_task]
            if all(vals):
                mean = sum(r.value for r in vals) / len(vals)
                out.append(vals[0]._replace(value=mean))
        return out

    def analogue(self, task: str) -> str | None:
        """A note on the published analogue of an offline task, or ``None``."""
        return self.analogues.get(task)


def format_refs(refs: list[Reference]) -> str:
    """``"91.4 (TLlib); 73.9 (DANN paper)"``, or ``"–"`` when there is none."""
    if not refs:
        return "–"
    parts = []
    for r in refs:
        extra = ", class-mean" if r.metric == "mean_class_accuracy" else ""
        parts.append(f"{r.value:.1f} ({r.short}{extra})")
    return "; ".join(parts)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> References:
    with open(path) as f:
        return References(json.load(f))


def load(path: str | None = None) -> References:
    """Loads the published numbers (default: ``tljax/references.json``).

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if an entry names a source the file does not define.
    """
    path = os.path.abspath(path or DEFAULT_PATH)
    if not os.path.exists(path):
        raise FileNotFoundError(f"References file {path!r} does not exist.")
    return _load_cached(path)

"""DomainBed's evaluation protocol over tljax runs (Gulrajani & Lopez-Paz, ICLR 2021).

Three pieces, each usable on its own (``python -m experiments.dg`` chains them):

* **The search.** :func:`sample_hparams` draws a method's hyperparameters from DomainBed's
  distributions (:data:`SEARCH`, the small-image ones of ``domainbed/hparams_registry.py``),
  seeded by ``(hparams_seed, trial_seed)``; ``hparams_seed = 0`` is the defaults, as in
  DomainBed. Each value has its own random stream (a seed hashed from the run's seed and
  the hyperparameter's name), so adding a hyperparameter to a method does not change the
  others' draws.
* **The plan.** :func:`plan` lists every run of a leave-one-domain-out sweep: each held-out
  ``test`` domain × method × hyperparameter draw × trial, and with ``loo=True`` the
  leave-one-domain-out cross-validation runs that hold out a second domain ``val`` as
  well. A trial fixes the data split (``data.data_seed``) and, with the draw, the
  hyperparameters; the model seed is hashed from all coordinates.
* **The selection.** :func:`select` applies DomainBed's three model-selection rules to the
  evaluations logged in each run's ``metrics.jsonl`` (:mod:`tljax.domains` logs DomainBed's
  keys); :mod:`tljax.dg_tables` lays out DomainBed's tables from it
  (:class:`tljax.report.Table`, so markdown, CSV and LaTeX).

The rules, as ``domainbed/model_selection.py``:

* ``train_domain_val`` (DomainBed's ``IIDAccuracySelectionMethod``): in each run the
  evaluation step with the highest mean accuracy on the training domains' out splits
  (``train_domains_val_acc``); the hyperparameters whose run scores highest there.
* ``loo`` (``LeaveOneOutSelectionMethod``): at each step, the mean over the other training
  domains ``v`` of the accuracy on ``v``'s in split of the run that held out ``test`` and
  ``v`` (``val_domain_acc``); a step counts only when every ``v`` has it; the best step
  of each draw, then the best draw. The test accuracy is that of the run holding out
  ``test`` alone at the same step.
* ``test_domain_val`` (``OracleSelectionMethod``): the *last* evaluation of each run, the
  draw with the highest accuracy on the held-out domain's out split (``target_out_acc``).

The reported number is always the held-out domain's in split (``target_test_acc``). Over
trials: the mean and DomainBed's standard error ``std/sqrt(n)`` (NumPy's ``std``, ddof 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

RULES = ("train_domain_val", "loo", "test_domain_val")
RULE_TITLES = {
    "train_domain_val": "training-domain validation",
    "loo": "leave-one-domain-out cross-validation",
    "test_domain_val": "test-domain validation (oracle)",
}
SE_NOTE = "± is DomainBed's standard error over trials, std/sqrt(n) (ddof 0; 0 for one trial)."
MANIFEST = "dg_protocol.json"


@dataclasses.dataclass(frozen=True)
class Hparam:
    """One searched hyperparameter: the config key it sets, DomainBed's default and its
    random distribution (``sample(rng)``, ``rng`` a ``np.random.RandomState``)."""

    key: str
    default: object
    sample: Callable[[np.random.RandomState], object]
    text: str


def _log_uniform(lo: float, hi: float) -> Callable:
    return lambda r: float(10 ** r.uniform(lo, hi))


def _int_log_uniform(lo: float, hi: float) -> Callable:
    return lambda r: int(10 ** r.uniform(lo, hi))


def _dann_hidden(r: np.random.RandomState) -> tuple[int, ...]:
    # DomainBed: mlp_width int(2^U(6,10)), mlp_depth choice{3,4,5} linear layers, so
    # depth - 1 hidden layers (its default 256 wide, depth 3: tljax's (256, 256)).
    width = int(2 ** r.uniform(6, 10))
    depth = int(r.choice([3, 4, 5]))
    return (width,) * (depth - 1)


_LR = Hparam("optim.lr", 1e-3, _log_uniform(-4.5, -2.5), "10^U(-4.5,-2.5)")
_BATCH = Hparam(
    "data.batch_size", 32, lambda r: int(2 ** r.uniform(3, 9)), "int(2^U(3,9)) per domain"
)
_WEIGHT = Hparam("method.weight", 1.0, _log_uniform(-1, 1), "10^U(-1,1)")
_DANN = (
    Hparam("method.hparams.grl_hi", 1.0, _log_uniform(-2, 2), "10^U(-2,2)"),
    Hparam(
        "method.hparams.hidden", (256, 256), _dann_hidden, "width int(2^U(6,10)), depth {3,4,5}"
    ),
)

# Method -> the hyperparameters searched besides the learning rate (DomainBed's names in
# the methods' docstrings). Methods not listed search the learning rate only.
SEARCH: dict[str, tuple[Hparam, ...]] = {
    "erm": (),
    "irm": (
        Hparam("method.hparams.penalty_weight", 100.0, _log_uniform(-1, 5), "10^U(-1,5)"),
        Hparam("method.hparams.anneal_iters", 500, _int_log_uniform(0, 4), "int(10^U(0,4))"),
    ),
    "vrex": (
        Hparam("method.hparams.penalty_weight", 10.0, _log_uniform(-1, 5), "10^U(-1,5)"),
        Hparam("method.hparams.anneal_iters", 500, _int_log_uniform(0, 4), "int(10^U(0,4))"),
    ),
    "group_dro": (Hparam("method.hparams.eta", 0.01, _log_uniform(-3, -1), "10^U(-3,-1)"),),
    "mixup": (Hparam("method.hparams.alpha", 0.2, _log_uniform(-1, 1), "10^U(-1,1)"),),
    "dg_coral": (_WEIGHT,),
    "dg_mmd": (_WEIGHT,),
    "dg_dann": _DANN,
    "cdann": _DANN,
    "m3sda": (_WEIGHT,),
    "ms_dann": (_WEIGHT,),
}


def seed_hash(*args) -> int:
    """An integer in ``[0, 2^31)`` from the arguments' text (DomainBed's ``seed_hash``)."""
    digest = hashlib.md5(str(args).encode("utf-8")).hexdigest()
    return int(digest, 16) % (2**31)


def search_space(method: str, *, batch_size: bool = False) -> tuple[Hparam, ...]:
    """The hyperparameters searched for ``method``: the learning rate, the method's own
    (:data:`SEARCH`) and, with ``batch_size``, the batch size per domain."""
    return (_LR,) + ((_BATCH,) if batch_size else ()) + SEARCH.get(method, ())


def sample_hparams(
    method: str, hparams_seed: int, trial_seed: int, *, batch_size: bool = False
) -> dict[str, object]:
    """``{config key: value}`` of one draw; ``hparams_seed = 0`` gives the defaults."""
    space = search_space(method, batch_size=batch_size)
    if hparams_seed == 0:
        return {h.key: h.default for h in space}
    seed = seed_hash(hparams_seed, trial_seed)
    return {h.key: h.sample(np.random.RandomState(seed_hash(seed, h.key))) for h in space}


@dataclasses.dataclass(frozen=True)
class ProtocolRun:
    """One run of a sweep: its coordinates, the config values it sets, and its directory
    (relative to the sweep's root)."""

    dataset: str
    method: str
    test: str
    val: str | None
    hparams_seed: int
    trial: int
    hparams: dict
    path: str

    @property
    def seed(self) -> int:
        """The model's seed (initialisation, batches), hashed from every coordinate."""
        return seed_hash(
            self.dataset, self.method, self.test, self.val, self.hparams_seed, self.trial
        )

    def overrides(self) -> dict[str, object]:
        """Config key → value for this run (besides the seed)."""
        out = {"data.task_kwargs.test": self.test, "data.data_seed": self.trial}
        if self.val is not None:
            out["data.task_kwargs.val"] = self.val
        out.update(self.hparams)
        return out

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hparams"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.hparams.items()}
        return d


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "+-.%" else "_" for c in text)


def plan(
    dataset: str,
    domains: Sequence[str],
    methods: Sequence[str],
    *,
    n_hparams: int,
    n_trials: int,
    loo: bool = False,
    test_domains: Sequence[str] | None = None,
    batch_size: bool = False,
) -> list[ProtocolRun]:
    """Every run of a leave-one-domain-out sweep over ``test_domains`` (default: all).

    Raises:
      ValueError: for an unknown domain, fewer than 2 domains (3 with ``loo``), or
        non-positive counts.
    """
    domains = list(domains)
    tests = list(test_domains) if test_domains else domains
    unknown = [d for d in tests if d not in domains]
    if unknown:
        raise ValueError(f"Unknown held-out domain(s) {unknown} of {dataset!r}; valid: {domains}.")
    if n_hparams < 1 or n_trials < 1:
        raise ValueError(f"n_hparams and n_trials must be >= 1, got {n_hparams} and {n_trials}.")
    need = 3 if loo else 2
    if len(domains) < need:
        raise ValueError(
            f"{dataset!r} has {len(domains)} domains; the protocol needs >= {need}"
            + (" for leave-one-domain-out validation." if loo else ".")
        )
    runs = []
    for method in methods:
        for test in tests:
            vals = [None] + ([v for v in domains if v != test] if loo else [])
            for h in range(n_hparams):
                for t in range(n_trials):
                    hp = sample_hparams(method, h, t, batch_size=batch_size)
                    for val in vals:
                        held = f"test={_slug(test)}" + ("" if val is None else f",val={_slug(val)}")
                        path = os.path.join(_slug(dataset), method, held, f"h{h}_t{t}")
                        runs.append(ProtocolRun(dataset, method, test, val, h, t, hp, path))
    return runs


# ----------------------------------------------------------------------------- manifest


def write_manifest(root: str, runs: Sequence[ProtocolRun], info: dict | None = None) -> str:
    """Adds ``runs`` to ``<root>/dg_protocol.json`` (keeping the runs already listed, so
    that a sweep grown by more draws or trials reports over all of them); atomic."""
    path = os.path.join(root, MANIFEST)
    old = read_manifest(root) if os.path.exists(path) else {"runs": [], "info": {}}
    by_path = {r.path: r.to_json() for r in old["runs"]}
    by_path.update({r.path: r.to_json() for r in runs})
    merged = dict(old.get("info", {}))
    for k, v in (info or {}).items():  # per-dataset entries ("domains") merge
        both = isinstance(v, dict) and isinstance(merged.get(k), dict)
        merged[k] = {**merged[k], **v} if both else v
    data = {"info": merged, "runs": list(by_path.values())}
    os.makedirs(root, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_manifest(root: str) -> dict:
    """``{"info": ..., "runs": [...]}`` of a sweep; a clear error when absent or garbled."""
    path = os.path.join(root, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {MANIFEST} in {root!r}: not a domain-generalization sweep.")
    try:
        with open(path) as f:
            data = json.load(f)
        data["runs"] = [
            ProtocolRun(
                **{
                    **r,
                    "hparams": {
                        k: tuple(v) if isinstance(v, list) else v for k, v in r["hparams"].items()
                    },
                }
            )
            for r in data["runs"]
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a valid sweep manifest: {e}") from None
    return data


# ----------------------------------------------------------------------------- selection


def load_evals(root: str, run: ProtocolRun) -> list[dict] | None:
    """The evaluations of a finished run (``None`` while it has no ``results.json``)."""
    from tljax import logs

    workdir = os.path.join(root, run.path)
    if not os.path.exists(os.path.join(workdir, "results.json")):
        return None
    return sorted(logs.read_metrics(workdir, kind="eval"), key=lambda r: r["step"])


def _best(rows: list[dict], score: Callable[[dict], float | None]) -> tuple[float, dict] | None:
    """The row with the highest score (ties: the earlier step, as DomainBed's ``max``),
    ``None`` if none scores."""
    scored = [(score(r), r) for r in rows]
    scored = [(s, r) for s, r in scored if s is not None]
    if not scored:
        return None
    return max(scored, key=lambda sr: sr[0])


def _draw_score(rule: str, main: list[dict], loo_runs: dict[str, list[dict]], vals):
    """``(validation score, test accuracy, step)`` of one draw under ``rule``, or ``None``."""
    if rule == "train_domain_val":
        best = _best(main, lambda r: r.get("train_domains_val_acc"))
    elif rule == "test_domain_val":
        last = main[-1] if main else None
        best = (
            None if last is None or "target_out_acc" not in last else (last["target_out_acc"], last)
        )
    elif rule == "loo":
        if not vals or any(v not in loo_runs for v in vals):
            return None
        at = [{r["step"]: r.get("val_domain_acc") for r in loo_runs[v]} for v in vals]

        def score(row):
            accs = [a.get(row["step"]) for a in at]
            return None if any(x is None for x in accs) else float(np.mean(accs))

        best = _best(main, score)
    else:
        raise ValueError(f"Unknown selection rule {rule!r}; valid: {list(RULES)}.")
    if best is None:
        return None
    return best[0], best[1]["target_test_acc"], best[1]["step"]


def select(root: str, runs: Sequence[ProtocolRun], domains: dict[str, list[str]] | None = None):
    """DomainBed's selection over the finished runs of a sweep.

    Args:
      root: the sweep's directory.
      runs: its runs (:func:`plan` or :func:`read_manifest`).
      domains: ``{dataset: domain names}``; the leave-one-domain-out rule needs, for each
        held-out domain, a run per other domain (default: the domains the runs name).

    Returns:
      ``{(dataset, method, test, rule): {"trials": {trial: {"acc", "val", "step",
      "hparams_seed", "hparams"}}, "mean", "se", "n"}}`` — accuracies in percent; a cell
      appears only when at least one trial is complete under that rule.
    """
    if domains is None:
        domains = {}
        for r in runs:
            names = domains.setdefault(r.dataset, [])
            for d in (r.test, r.val):
                if d is not None and d not in names:
                    names.append(d)
    evals = {r.path: load_evals(root, r) for r in runs}
    groups: dict[tuple, dict] = {}
    for r in runs:
        g = groups.setdefault((r.dataset, r.method, r.test, r.trial, r.hparams_seed), {})
        g[r.val] = (r, evals[r.path])
    out: dict[tuple, dict] = {}
    for (dataset, method, test, trial, hseed), g in sorted(groups.items()):
        if None not in g or g[None][1] is None or not g[None][1]:
            continue
        run, main = g[None]
        loo_runs = {v: e for v, (_, e) in g.items() if v is not None and e}
        vals = [d for d in domains[dataset] if d != test]
        for rule in RULES:
            s = _draw_score(rule, main, loo_runs, vals)
            if s is None:
                continue
            cell = out.setdefault((dataset, method, test, rule), {"trials": {}})
            best = cell["trials"].get(trial)
            if best is None or s[0] >= best["val"]:  # ties: the later draw (DomainBed)
                cell["trials"][trial] = {
                    "val": s[0],
                    "acc": 100.0 * s[1],
                    "step": s[2],
                    "hparams_seed": hseed,
                    "hparams": run.hparams,
                }
    order = {m: i for i, m in enumerate(dict.fromkeys(r.method for r in runs))}
    out = dict(sorted(out.items(), key=lambda kv: order[kv[0][1]]))  # the runs' method order
    for cell in out.values():
        accs = np.array([t["acc"] for t in cell["trials"].values()])
        cell["mean"] = float(accs.mean())
        cell["se"] = float(accs.std() / math.sqrt(len(accs)))
        cell["n"] = len(accs)
    return out

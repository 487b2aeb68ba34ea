r"""Builds a small model zoo offline, fine-tunes every candidate on target tasks, and
measures how well transferability estimators rank the candidates (the LogME paper's
protocol at CPU scale).

    python -m experiments.zoo --workdir=runs/zoo \
        [--archs=lenet,mlp,vit_tiny] [--pretrainings=fashion,digits,simclr,scratch] \
        [--targets=digits_rot,fashion_inv] [--lr_scales=1.0,0.1] [--max_train=2000] \
        [--strategies=finetune,linear_probe,gradual_unfreeze] [--image_size=28] \
        [--pretrain_steps=1000] [--steps=300] [--seed=0] [--parallel=1]

1. **The zoo** (``configs/zoo.py``): every architecture × pretraining is a candidate —
   supervised on Fashion-MNIST, supervised on the UCI digits, SimCLR on Fashion-MNIST,
   or from scratch (the seeded initialisation, no pretraining run). Pretraining runs live
   in ``<workdir>/pretrain/<arch>_<pretraining>``.
2. **Ground truth**: each candidate is fine-tuned on each target task (every parameter
   trains, a new head) once per learning rate of the grid (``--lr_scales`` times the
   architecture's base rate), in ``<workdir>/finetune/<target>/<arch>_<pretraining>/
   lr_<scale>``. The rate is chosen by accuracy on the held-out 10% of the target's
   training split (``source_val_acc``; ties: the first rate of the grid), and the
   candidate's accuracy is that run's test accuracy — the test split never chooses.
   ``--strategies`` adds the same runs with feature extraction (``linear_probe``) and
   gradual unfreezing (``<workdir>/<strategy>/...``) for the transfer table; the ranking
   always uses ``finetune``.
3. **Estimators** (:mod:`tljax.ranking` through :func:`experiments.rank.scores`): LogME,
   LEEP, NCE and H-score of each *pretrained* candidate (before fine-tuning) on the
   target's whole training split (Fashion targets: the ``--max_train`` subsample the
   fine-tuning runs also use), from the features at the head's input; LEEP and NCE use
   the candidate's own 10-way head (for ``simclr`` its online linear probe, for
   ``scratch`` the random head).
4. **Result**: ``<workdir>/zoo.md`` and ``zoo.json``: per target, each candidate's
   fine-tuned accuracy, chosen rate and scores, then each estimator's Kendall τ and
   weighted τ against the accuracies; the mean τ over targets; and, with more than one
   strategy, each candidate's accuracy per strategy.

The zoo's settings (image size, steps, seed, subsample) are recorded in
``<workdir>/zoo_setup.json``; a later call with other settings is refused (use another
workdir), so a zoo never mixes runs of two setups.

Finished runs (``results.json``) are skipped and interrupted ones resume, so the command
can be re-run, e.g. with another target, at the cost of what is new. ``--parallel=N``
trains N runs at a time as subprocesses (``experiments.sweep``'s runner, each pinned to
its share of the cores). Bad arguments are one ``error:`` line and exit status 2; a failed
run makes the command exit 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from configs import zoo as zoo_cfg
from experiments import rank as rank_lib
from experiments import sweep

FLAGS = flags.FLAGS
CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "zoo.py"
)


def define_flags() -> None:
    """Command-line flags (only when run as a script)."""
    flags.DEFINE_string("workdir", None, "Root directory of the zoo.")
    flags.DEFINE_list(
        "archs",
        [a for a in zoo_cfg.ARCHS if a not in zoo_cfg.MIN_SIZE],  # the 28 px ones
        f"Architectures (of {', '.join(zoo_cfg.ARCHS)}).",
    )
    flags.DEFINE_list("pretrainings", list(zoo_cfg.PRETRAININGS), "Pretrainings.")
    flags.DEFINE_list("targets", ["digits_rot", "fashion_inv"], "Target tasks.")
    flags.DEFINE_list("lr_scales", ["1.0", "0.1"], "Fine-tuning rates, x the arch's base.")
    flags.DEFINE_integer("max_train", 2000, "Subsample of a Fashion target's train split.")
    flags.DEFINE_integer("pretrain_steps", zoo_cfg.PRETRAIN_STEPS, "Steps of a pretraining.")
    flags.DEFINE_integer("steps", zoo_cfg.FINETUNE_STEPS, "Steps of a fine-tuning run.")
    flags.DEFINE_integer("seed", 0, "Seed of every run.")
    flags.DEFINE_list("strategies", ["finetune"], "Fine-tuning strategies (configs/zoo.py).")
    flags.DEFINE_integer(
        "image_size",
        28,
        "Image side of every run (vgg11_bn[_slim]: >= 32, inception_v3[_slim]: >= 75).",
    )
    flags.DEFINE_integer("parallel", 1, "Runs at a time (subprocesses when > 1).")
    flags.mark_flags_as_required(["workdir"])


def candidates(archs: list[str], pretrainings: list[str]) -> list[tuple[str, str]]:
    return [(a, p) for p in pretrainings for a in archs]


def pretrain_dir(root: str, arch: str, pretraining: str) -> str:
    return os.path.abspath(os.path.join(root, "pretrain", f"{arch}_{pretraining}"))


def finetune_dir(
    root: str, target: str, arch: str, pretraining: str, scale: float, strategy: str = "finetune"
) -> str:
    return os.path.join(root, strategy, target, f"{arch}_{pretraining}", f"lr_{scale:g}")


def check_args(archs, pretrainings, targets, lr_scales, strategies=("finetune",)) -> list[float]:
    """Validates the lists; returns the rates as floats.

    Raises:
      ValueError: an unknown name, a non-positive or repeated rate, fewer than 2
        candidates (a ranking needs two).
    """
    for what, values, valid in (
        ("architecture", archs, zoo_cfg.ARCHS),
        ("pretraining", pretrainings, zoo_cfg.PRETRAININGS),
        ("target", targets, zoo_cfg.TARGETS),
        ("strategy", strategies, zoo_cfg.STRATEGIES),
    ):
        bad = [v for v in values if v not in valid]
        if bad or not values:
            raise ValueError(f"unknown {what}(s) {bad or values}; valid: {sorted(valid)}.")
    try:
        scales = [float(s) for s in lr_scales]
    except ValueError as e:
        raise ValueError(f"--lr_scales must be numbers, got {lr_scales}.") from e
    if not scales or any(s <= 0 for s in scales) or len(set(scales)) != len(scales):
        raise ValueError(f"--lr_scales must be distinct positive numbers, got {lr_scales}.")
    if "finetune" not in strategies:
        raise ValueError(f"--strategies must include finetune (the ranking's), got {strategies}.")
    if len(archs) * len(pretrainings) < 2:
        raise ValueError("the zoo needs at least 2 candidates (architectures × pretrainings).")
    return scales


def plan(
    root,
    archs,
    pretrainings,
    targets,
    scales,
    *,
    pretrain_steps,
    steps,
    seed,
    max_train,
    strategies=("finetune",),
    image_size=28,
):
    """``(pretraining runs, fine-tuning runs)`` as :class:`experiments.sweep.RunSpec`."""
    pre, fine = [], []
    size = f",image_size={image_size}" if image_size != 28 else ""
    for arch, p in candidates(archs, pretrainings):
        if zoo_cfg.PRETRAININGS[p] is not None:
            arg = f"role=pretrain,arch={arch},pretrain={p},steps={pretrain_steps}{size}"
            pre.append(sweep.RunSpec(f"{CONFIG}:{arg}", seed, {}, pretrain_dir(root, arch, p)))
    for strategy in strategies:
        for target in targets:
            for arch, p in candidates(archs, pretrainings):
                init = "none" if zoo_cfg.PRETRAININGS[p] is None else pretrain_dir(root, arch, p)
                for s in scales:
                    arg = f"role=finetune,arch={arch},target={target},init={init},lr_scale={s!r}"
                    arg += f",steps={steps}{size}"
                    if strategy != "finetune":
                        arg += f",strategy={strategy}"
                    if target.startswith("fashion") and max_train:
                        arg += f",max_train={max_train}"
                    workdir = finetune_dir(root, target, arch, p, s, strategy)
                    fine.append(sweep.RunSpec(f"{CONFIG}:{arg}", seed, {}, workdir))
    return pre, fine


SETUP_KEYS = ("image_size", "pretrain_steps", "steps", "seed", "max_train")


def check_setup(root: str, setup: dict) -> None:
    """Records the zoo's settings in ``<root>/zoo_setup.json`` or checks them against it.

    Raises:
      ValueError: the workdir holds a zoo with other settings.
    """
    path = os.path.join(root, "zoo_setup.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = {k: (old.get(k), setup[k]) for k in SETUP_KEYS if old.get(k) != setup[k]}
        if diff:
            what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(
                f"{root} holds a zoo with other settings ({what}); use another --workdir."
            )
        return
    os.makedirs(root, exist_ok=True)
    from tljax.workdir import atomic_write

    atomic_write(path, json.dumps({k: setup[k] for k in SETUP_KEYS}, indent=1))


def train(runs: list[sweep.RunSpec], parallel: int) -> None:
    """Trains the unfinished runs; exits 1 if one fails."""
    todo = [r for r in runs if not r.done()]
    if not todo:
        return
    if parallel > 1:
        failed = sweep.run_parallel(todo, [], parallel)
        if failed:
            names = ", ".join(r.workdir for r in failed)
            print(
                f"error: {len(failed)} run(s) failed (see their run.log): {names}", file=sys.stderr
            )
            sys.exit(1)
    else:
        sweep.run_sequential(todo, [])


def _results(workdir: str) -> dict:
    """The run's final results, with ``source_val_acc`` of its last evaluation (the step
    whose test accuracy ``results.json`` reports).

    Raises:
      KeyError: no evaluation at the final step, or none with ``source_val_acc``.
    """
    from tljax.logs import read_metrics

    with open(os.path.join(workdir, "results.json")) as f:
        res = json.load(f)
    evals = [r for r in read_metrics(workdir, "eval") if r["step"] == res["steps"]]
    if not evals or "source_val_acc" not in evals[-1]:
        raise KeyError(f"{workdir}: no held-out accuracy (source_val_acc) at step {res['steps']}.")
    res["source_val_acc"] = evals[-1]["source_val_acc"]
    return res


def choose_rate(results: dict[float, dict]) -> tuple[float, dict]:
    """The rate with the highest ``source_val_acc`` (ties: the first in ``results``'
    order) and its results.

    Raises:
      KeyError: a run without ``source_val_acc`` (trained without a held-out split).
    """
    best = None
    for scale, r in results.items():
        if "source_val_acc" not in r:
            raise KeyError(f"results of lr_scale {scale} have no source_val_acc.")
        if best is None or r["source_val_acc"] > results[best]["source_val_acc"]:
            best = scale
    return best, results[best]


def candidate_scores(
    root, arch, pretraining, target, *, max_train, seed, image_size=28
) -> dict[str, float]:
    """The estimators of one pretrained candidate on ``target``'s train split."""
    kwargs = {"max_train": max_train} if target.startswith("fashion") and max_train else {}
    if zoo_cfg.PRETRAININGS[pretraining] is not None:
        ex = rank_lib.extract(pretrain_dir(root, arch, pretraining), target, task_kwargs=kwargs)
    else:  # from scratch: the seeded initialisation of the architecture, never trained
        from tljax import config as config_lib
        from tljax.loop import build

        config = zoo_cfg.pretrain(arch, "digits", steps=1, image_size=image_size)
        config.seed = seed
        config_lib.resolve(config)
        parts = build(config)
        state = parts["state"]
        ex = rank_lib.extract_model(
            config,
            parts,
            state.params,
            state.rest,
            target,
            task_kwargs=kwargs,
            name=f"{arch}_scratch",
        )
    return rank_lib.scores(ex)


def _chosen(root, target, arch, p, scales, strategy) -> dict:
    """The run of the rate chosen on held-out data, for one candidate and strategy."""
    per_rate = {s: _results(finetune_dir(root, target, arch, p, s, strategy)) for s in scales}
    scale, chosen = choose_rate(per_rate)
    return dict(
        lr_scale=scale,
        accuracy=chosen["target_test_acc"],
        val_accuracy=chosen["source_val_acc"],
        best_test_accuracy=max(r["target_test_acc"] for r in per_rate.values()),
    )


def evaluate(
    root,
    archs,
    pretrainings,
    targets,
    scales,
    *,
    max_train,
    seed,
    strategies=("finetune",),
    image_size=28,
) -> dict:
    """Accuracies, scores and rank correlations of every target (all runs finished)."""
    from tljax import ranking

    out = {"targets": {}, "candidates": [f"{a}_{p}" for a, p in candidates(archs, pretrainings)]}
    for target in targets:
        rows = []
        for arch, p in candidates(archs, pretrainings):
            row = dict(candidate=f"{arch}_{p}")
            row.update(_chosen(root, target, arch, p, scales, "finetune"))
            row["scores"] = candidate_scores(
                root, arch, p, target, max_train=max_train, seed=seed, image_size=image_size
            )
            row["strategies"] = {
                st: _chosen(root, target, arch, p, scales, st) for st in strategies
            }
            rows.append(row)
        accs = [r["accuracy"] for r in rows]
        taus = {}
        for name in rank_lib.ESTIMATORS:
            s = [r["scores"][name] for r in rows]
            taus[name] = dict(
                kendall_tau=ranking.kendall_tau(s, accs),
                weighted_tau=ranking.weighted_kendall_tau(s, accs),
            )
        out["targets"][target] = dict(rows=rows, tau=taus)
    out["mean_tau"] = {
        name: {
            k: sum(t["tau"][name][k] for t in out["targets"].values()) / len(targets)
            for k in ("kendall_tau", "weighted_tau")
        }
        for name in rank_lib.ESTIMATORS
    }
    return out


def format_table(result: dict) -> str:
    names = list(rank_lib.ESTIMATORS)
    lines = []
    for target, t in result["targets"].items():
        lines += [
            f"### {target}",
            "",
            "| candidate | fine-tuned test acc (%) | lr scale | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names),
        ]
        for r in sorted(t["rows"], key=lambda r: -r["accuracy"]):
            cells = " | ".join(f"{r['scores'][k]:.4f}" for k in names)
            lines.append(
                f"| {r['candidate']} | {100 * r['accuracy']:.1f} | {r['lr_scale']:g} | {cells} |"
            )
        lines += ["", "| estimator | Kendall τ | weighted τ |", "|---|---|---|"]
        for k in names:
            e = t["tau"][k]
            lines.append(f"| {k} | {e['kendall_tau']:.3f} | {e['weighted_tau']:.3f} |")
        lines.append("")
    strategies = list(result["targets"][next(iter(result["targets"]))]["rows"][0]["strategies"])
    if len(strategies) > 1:
        lines += [
            "### Transfer strategies",
            "",
            "Test accuracy (%) after each strategy (its rate chosen on held-out data).",
            "",
            "| candidate | "
            + " | ".join(f"{t}: {st}" for t in result["targets"] for st in strategies)
            + " |",
            "|---|" + "---|" * (len(strategies) * len(result["targets"])),
        ]
        for i, name in enumerate(result["candidates"]):
            cells = [
                f"{100 * t['rows'][i]['strategies'][st]['accuracy']:.1f}"
                for t in result["targets"].values()
                for st in strategies
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if len(result["targets"]) > 1:
        lines += [
            "### Mean over targets",
            "",
            "| estimator | Kendall τ | weighted τ |",
            "|---|---|---|",
        ]
        for k in names:
            e = result["mean_tau"][k]
            lines.append(f"| {k} | {e['kendall_tau']:.3f} | {e['weighted_tau']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv) -> None:
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
    root = FLAGS.workdir
    try:
        scales = check_args(
            FLAGS.archs, FLAGS.pretrainings, FLAGS.targets, FLAGS.lr_scales, FLAGS.strategies
        )
        if FLAGS.parallel < 1 or FLAGS.pretrain_steps < 1 or FLAGS.steps < 1:
            raise ValueError("--parallel, --pretrain_steps and --steps must be >= 1.")
        for arch in FLAGS.archs:
            least = zoo_cfg.MIN_SIZE.get(arch, 1)
            if FLAGS.image_size < least:
                raise ValueError(f"{arch} needs --image_size >= {least}, got {FLAGS.image_size}.")
        setup = {k: getattr(FLAGS, k) for k in SETUP_KEYS}
        pre, fine = plan(
            root,
            FLAGS.archs,
            FLAGS.pretrainings,
            FLAGS.targets,
            scales,
            strategies=FLAGS.strategies,
            **setup,
        )
        for spec in pre + fine:  # every config builds before anything trains
            sweep.make_config(spec, [])
        check_setup(root, setup)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    train(pre, FLAGS.parallel)
    train(fine, FLAGS.parallel)
    result = evaluate(
        root,
        FLAGS.archs,
        FLAGS.pretrainings,
        FLAGS.targets,
        scales,
        max_train=FLAGS.max_train,
        seed=FLAGS.seed,
        strategies=FLAGS.strategies,
        image_size=FLAGS.image_size,
    )
    result["setup"] = dict(
        setup,
        archs=FLAGS.archs,
        pretrainings=FLAGS.pretrainings,
        targets=FLAGS.targets,
        lr_scales=scales,
        strategies=FLAGS.strategies,
    )
    table = format_table(result)
    with open(os.path.join(root, "zoo.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(root, "zoo.md"), "w") as f:
        f.write(table)
    print(table)
    sys.stdout.flush()


if __name__ == "__main__":
    define_flags()
    app.run(main)

r"""The test-time adaptation table of ``docs/tta.md``: several source runs (seeds) x target
tasks x methods x {episodic, online}, online accuracy averaged over the runs.

    python -m experiments.tta_table --workdirs=runs/tta/src_c_s0,runs/tta/src_c_s1 \
        --tasks=digits-c/contrast/5,digits-c/fog/5 \
        --methods=source,bn_adapt,tent,tent:lr=0.01,t3a,t3a:batch_stats=True,shot_im \
        [--batch_size=64] [--out=runs/tta/table.json]

Each run adapts with the stream seed of its position in ``--workdirs`` (0, 1, ...); a
method is ``name`` (its default hyperparameters, :mod:`tljax.adaptation`) or
``name:k=v;k=v`` (those hyperparameters changed; the keys ``predict`` and
``steps_per_batch`` are options of the stream, :func:`tljax.adapt.adapt_stream`). Prints a markdown
table (mean ± standard deviation, ddof=0, of the online accuracy in %).

The corruption tables (``--family``): every run adapts on the 15 corruptions of
``--family`` (``digits-c``, ``fashion-c``; :data:`tljax.data.corruptions.NAMES`, the
CIFAR-10-C order) at ``--severity``, ``--per_corruption`` test images of each (the same
images, in the same seeded order, for every corruption; seed = the run's position), in
two modes: ``continual`` (one stream, corruption after corruption, never reset) and
``reset`` (each corruption starts from the source model: the Tent/EATA per-corruption
protocol); ``episodic`` (reset before every batch, :func:`tljax.adapt.adapt_stream`'s
mode) is a third choice. Error (%) per corruption and the mean over the 15:

    python -m experiments.tta_table --workdirs=runs/tta/src_c_s0,runs/tta/src_c_s1 \
        --family=digits-c --per_corruption=256 --modes=continual,reset \
        --methods=source,bn_adapt,tent,eata:fisher_x=clean,cotta,shot_im,t3a \
        [--out=runs/tta/c_table.json] [--bench_steps=50]

``fisher_x=clean`` gives EATA the clean versions of the run's source test images
(up to 2,000; the paper's in-distribution Fisher samples). ``--bench_steps=K`` also times
each method's jitted adaptation step and the run's training step (K steps each on one
batch of ``--batch_size``, after a warm-up; median of 5 interleaved blocks) and prints
steps/s.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
MODES = (("online", False), ("episodic", True))
SEQUENCE_MODES = ("continual", "reset", "episodic")
FISHER_EXAMPLES = 2000  # EATA's --fisher_size
_STREAMS: dict = {}
STREAM_KEYS = ("predict", "steps_per_batch")


def define_flags() -> None:
    """The command-line flags (defined only when run as a script)."""
    flags.DEFINE_list("workdirs", None, "Trained source runs, one per seed.")
    flags.DEFINE_list("tasks", None, "Tasks whose target test split is the stream.")
    flags.DEFINE_string("family", None, "Corruption family (digits-c, fashion-c): the 15.")
    flags.DEFINE_integer("severity", 5, "Corruption severity (with --family).")
    flags.DEFINE_integer("per_corruption", 256, "Test images per corruption (--family).")
    flags.DEFINE_list("modes", ["continual", "reset"], "With --family: continual/reset/episodic.")
    flags.DEFINE_integer("bench_steps", 0, "With --family: also time each adaptation step.")
    flags.DEFINE_list("methods", ["source", "bn_adapt", "tent", "t3a", "shot_im"], "Methods.")
    flags.DEFINE_integer("batch_size", 64, "Examples per stream batch.")
    flags.DEFINE_string("out", None, "Also write every number as JSON here.")
    flags.mark_flags_as_required(["workdirs"])


def parse_method(spec: str) -> tuple[str, dict]:
    """``"tent:lr=0.01;optimizer=sgd"`` → ``("tent", {"lr": 0.01, "optimizer": "sgd"})``."""
    from experiments.adapt import parse_hparams

    name, _, rest = spec.partition(":")
    return name, parse_hparams([kv for kv in rest.split(";") if kv])


def measure(workdirs, tasks, methods, *, batch_size: int = 64) -> dict:
    """``{task: {method: {mode: [online_acc per run]}}}``."""
    from tljax import adaptation
    from tljax.adapt import adapt_stream, load_context

    out: dict = {}
    for seed, workdir in enumerate(workdirs):
        for task in tasks:
            ctx, x, y, _ = load_context(workdir, task)
            for name in methods:
                base, hparams = parse_method(name)
                stream = {k: hparams.pop(k) for k in STREAM_KEYS if k in hparams}
                method = adaptation.get(base, ctx, **hparams)
                for mode, episodic in MODES:
                    res = adapt_stream(
                        method, x, y, batch_size=batch_size, episodic=episodic, seed=seed, **stream
                    )
                    acc = res.summary["online_acc"]
                    out.setdefault(task, {}).setdefault(name, {}).setdefault(mode, []).append(acc)
                    print(f"{workdir} {task} {name} {mode}: {100 * acc:.2f}", flush=True)
    return out


def format_table(table: dict, methods) -> str:
    """Markdown: one row per method and mode, one column per task, plus the mean."""
    tasks = list(table)
    lines = [
        "| method | mode | " + " | ".join(tasks) + " | mean |",
        "|---|---|" + "---:|" * (len(tasks) + 1),
    ]
    for name in methods:
        for mode, _ in MODES:
            cells, means = [], []
            for t in tasks:
                a = 100 * np.asarray(table[t][name][mode])
                cells.append(f"{a.mean():.1f} ± {a.std():.1f}")
                means.append(a.mean())
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {np.mean(means):.1f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# The corruption tables: the 15 corruptions of a family, continual or reset per corruption.


def clean_inputs(config) -> np.ndarray:
    """The run's clean source test images, prepared as its inputs (EATA's Fisher data)."""
    from tljax.data import pixels, tasks
    from tljax.data.core import standardize

    task = tasks.get_task(
        config.data.task,
        data_seed=config.data.data_seed,
        image_size=config.data.image_size,
        **config.data.task_kwargs.to_dict(),
    )
    x = task.source.test.x
    if config.data.standardize and not pixels.is_uint8(x):
        _, mean, std = standardize(task)
        x = ((np.asarray(x) - mean) / std).astype(np.float32)
    return np.asarray(x[:FISHER_EXAMPLES])


def corruption_streams(config, family: str, severity: int, per_corruption: int, seed: int):
    """``[(name, x, y)]`` for the 15 corruptions: the same ``per_corruption`` test images
    (a seeded permutation's first ones, in that order) under every corruption."""
    from tljax.adapt import target_inputs
    from tljax.data.corruptions import NAMES

    out, idx = [], None
    for name in NAMES:
        task = f"{family}/{name}/{severity}"
        key = (task, config.data.data_seed, config.data.image_size, config.data.task)
        if key not in _STREAMS:  # the runs of a table share their data: corrupt once
            _STREAMS[key] = target_inputs(config, task)[:2]
        x, y = _STREAMS[key]
        if idx is None:
            if per_corruption > len(x):
                raise ValueError(f"per_corruption={per_corruption} > the {len(x)} test images.")
            idx = np.random.default_rng(seed).permutation(len(x))[:per_corruption]
        out.append((name, x[idx], y[idx]))
    return out


def run_sequence(method, streams, *, mode: str, batch_size: int, seed: int, **stream):
    """Accuracy per stream of ``method`` run over ``streams`` in order.

    Args:
      mode: ``continual`` (never reset), ``reset`` (from the source at every stream),
        ``episodic`` (from the source at every batch).
      stream: ``predict``/``steps_per_batch`` of :func:`tljax.adapt.make_adapt_step`.

    Returns:
      ``(accuracies, seconds)``.
    """
    import time

    import jax
    import jax.numpy as jnp

    from tljax.adapt import make_adapt_step

    if mode not in SEQUENCE_MODES:
        raise ValueError(f"Unknown mode {mode!r}; valid: {list(SEQUENCE_MODES)}.")
    step = jax.jit(make_adapt_step(method, **stream), donate_argnums=0)
    source = method.init()
    fresh = lambda: jax.tree.map(jnp.copy, source)  # noqa: E731
    key = jax.random.key(seed)
    state, accs, i = fresh(), [], 0
    start = time.perf_counter()
    for d, (_, x, y) in enumerate(streams):
        if mode == "reset" and d > 0:
            state = fresh()
        correct = 0
        for lo in range(0, len(x), batch_size):
            if mode == "episodic":
                state = fresh()
            xb = jnp.asarray(x[lo : lo + batch_size])
            state, logits, _ = step(state, xb, jax.random.fold_in(key, i))
            correct += int(np.sum(np.asarray(logits).argmax(1) == y[lo : lo + batch_size]))
            i += 1
        accs.append(correct / len(x))
    return accs, time.perf_counter() - start


def bench(workdir: str, family: str, methods, *, batch_size: int, steps: int, blocks: int = 5):
    """Milliseconds per step (one per block) of each method's jitted adaptation step on a
    batch of ``batch_size`` corrupted images, and of the run's own training step
    (``"train step"``: ``tljax.loop.build``, ``batch_size`` images per domain, synthetic
    inputs as ``experiments.bench``), timed in interleaved blocks after a warm-up call."""
    import time

    import jax
    import jax.numpy as jnp

    from experiments.bench import host_batches
    from tljax import adaptation
    from tljax.adapt import load_context, make_adapt_step
    from tljax.loop import build

    ctx, x, _, config = load_context(workdir, f"{family}/fog/5")
    xb, key = jnp.asarray(x[:batch_size]), jax.random.key(0)
    runners = {}
    for spec in methods:
        name, hparams = parse_method(spec)
        hparams = {k: v for k, v in hparams.items() if k not in STREAM_KEYS}
        if hparams.get("fisher_x") == "clean":
            hparams["fisher_x"] = clean_inputs(config)
        method = adaptation.get(name, ctx, **hparams)
        step = jax.jit(make_adapt_step(method), donate_argnums=0)
        box = {"s": method.init()}
        box["s"] = jax.tree.map(jnp.copy, box["s"])

        def run(n, step=step, box=box):
            for i in range(n):
                box["s"], out, _ = step(box["s"], xb, jax.random.fold_in(key, i))
            jax.block_until_ready(out)

        runners[spec] = run
    parts = build(config)
    batch = jax.device_put(host_batches(parts["task"], batch_size, 1, seed=0))
    train = jax.jit(parts["train_step"], donate_argnums=0)
    tbox = {"s": jax.tree.map(jnp.copy, parts["state"])}

    def run_train(n):
        for _ in range(n):
            tbox["s"], m = train(tbox["s"], batch)
        jax.block_until_ready(m)

    runners["train step"] = run_train
    for run in runners.values():
        run(2)  # compile and warm up
    out: dict = {k: [] for k in runners}
    for _ in range(blocks):
        for k, run in runners.items():
            t = time.perf_counter()
            run(steps)
            out[k].append(1e3 * (time.perf_counter() - t) / steps)
    return out


def measure_sequence(
    workdirs,
    family: str,
    methods,
    *,
    severity: int = 5,
    per_corruption: int = 256,
    modes=("continual", "reset"),
    batch_size: int = 64,
    bench_steps: int = 0,
) -> dict:
    """The corruption table: ``{"corruptions", "errors": {method: {mode: [[error % per
    corruption] per run]}}, "seconds", "step_ms"}``."""
    from tljax import adaptation
    from tljax.adapt import load_context

    errors: dict = {}
    seconds: dict = {}
    step_ms: dict = {}
    names = None
    for seed, workdir in enumerate(workdirs):
        ctx, _, _, config = load_context(workdir, f"{family}/gaussian_noise/{severity}")
        streams = corruption_streams(config, family, severity, per_corruption, seed)
        names = [n for n, _, _ in streams]
        clean = None
        for spec in methods:
            base, hparams = parse_method(spec)
            stream = {k: hparams.pop(k) for k in STREAM_KEYS if k in hparams}
            if hparams.get("fisher_x") == "clean":
                clean = clean_inputs(config) if clean is None else clean
                hparams["fisher_x"] = clean
            method = adaptation.get(base, ctx, **hparams)
            for mode in modes:
                accs, sec = run_sequence(
                    method, streams, mode=mode, batch_size=batch_size, seed=seed, **stream
                )
                err = [100 * (1 - a) for a in accs]
                errors.setdefault(spec, {}).setdefault(mode, []).append(err)
                seconds.setdefault(spec, {}).setdefault(mode, []).append(sec)
                print(
                    f"{workdir} {spec} {mode}: mean error {np.mean(err):.2f} ({sec:.1f} s)",
                    flush=True,
                )
    if bench_steps:
        step_ms = bench(workdirs[0], family, methods, batch_size=batch_size, steps=bench_steps)
        for k, ms in step_ms.items():
            print(f"{k}: {1e3 / np.median(ms):.1f} steps/s", flush=True)
    return dict(
        workdirs=list(workdirs),
        family=family,
        severity=severity,
        per_corruption=per_corruption,
        batch_size=batch_size,
        corruptions=names,
        errors=errors,
        seconds=seconds,
        step_ms=step_ms,
    )


def format_errors(table: dict) -> str:
    """Markdown: one row per method and mode, the error (%) per corruption (mean over the
    runs) and the mean over the corruptions (mean ± std over the runs, ddof=0; two
    decimals: methods often differ by less than 0.1 point)."""
    short = [n.replace("_noise", "").replace("_blur", "").replace("_transform", "")
             for n in table["corruptions"]]  # fmt: skip
    short = [n.replace("jpeg_compression", "jpeg") for n in short]
    lines = [
        "| method | mode | " + " | ".join(short) + " | mean |",
        "|---|---|" + "---:|" * (len(short) + 1),
    ]
    for spec, by_mode in table["errors"].items():
        for mode, runs in by_mode.items():
            e = np.asarray(runs)  # (runs, corruptions)
            cells = [f"{v:.1f}" for v in e.mean(0)]
            means = e.mean(1)
            lines.append(
                f"| {spec} | {mode} | " + " | ".join(cells) + f" | {means.mean():.2f} ± "
                f"{means.std():.2f} |"
            )
    if table.get("step_ms"):
        lines += ["", "| step | steps/s (median of 5 interleaved blocks) |", "|---|---:|"]
        for spec, ms in table["step_ms"].items():
            lines.append(f"| {spec} | {1e3 / np.median(ms):.1f} |")
    return "\n".join(lines)


def main(argv) -> int:
    del argv
    if FLAGS.family:
        table = measure_sequence(
            FLAGS.workdirs,
            FLAGS.family,
            FLAGS.methods,
            severity=FLAGS.severity,
            per_corruption=FLAGS.per_corruption,
            modes=FLAGS.modes,
            batch_size=FLAGS.batch_size,
            bench_steps=FLAGS.bench_steps,
        )
        if FLAGS.out:
            with open(FLAGS.out, "w") as f:
                json.dump(table, f)
        print(format_errors(table))
        return 0
    if not FLAGS.tasks:
        raise app.UsageError("Give --tasks (or --family for the corruption tables).")
    table = measure(FLAGS.workdirs, FLAGS.tasks, FLAGS.methods, batch_size=FLAGS.batch_size)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(dict(workdirs=FLAGS.workdirs, batch_size=FLAGS.batch_size, table=table), f)
    print(format_table(table, FLAGS.methods))
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))

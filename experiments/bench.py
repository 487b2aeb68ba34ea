r"""Speed of the real train step of any config, and of a PyTorch reference of it.

    python -m experiments.bench --config=configs/dann_digits_m.py \
        [--config.data.batch_size=64] [--config.model.dtype=bfloat16] \
        [--input=both|synthetic|pipeline] [--steps_per_call=1,10] [--torch] \
        [--blocks=5] [--steps=50] [--out=runs/bench/dann.jsonl]

The step is the one training runs (``tljax.loop.build``: model × method × batch size
(``config.data.batch_size`` per domain) × precision (``config.model.dtype``)), jitted with
the state donated. Inputs are either *synthetic* (random arrays with the shapes and dtypes
of the task's arrays and labels in range, already on the device) or the real *pipeline*
(``DomainPairStream``: host gather + ``device_put`` every call, as the trainer does).
``--steps_per_call=K`` runs K steps in one compiled call (``lax.scan`` over K stacked
batches, metrics kept on the device): the regime where per-call overhead is amortised.

Every variant (and, with ``--torch``, each PyTorch variant of
:mod:`experiments.torch_reference`) is warmed up, then the timed blocks of all variants
are *interleaved* (block 1 of each, block 2 of each, ...) so that machine load hits them
alike; each block ends with ``jax.block_until_ready`` (torch: the step's ``.item()``
syncs and ``cuda.synchronize``). Reported per variant: steps/s, img/s (source + target
images) and ms/step (median and range over blocks), compile time (cold: ``lower`` +
``compile`` here; warm: the same in a fresh subprocess reading the persistent compilation
cache that a first subprocess filled), peak device memory (``memory_stats()``; ``null`` on
backends without it) beside XLA's memory analysis of the compiled program, FLOPs per
step (:mod:`tljax.flops`: the matmuls and convolutions of the single train step's jaxpr,
forward and backward; XLA's ``cost_analysis()`` figure is kept as ``xla_flops`` for
reference only — on the GPU it leaves out the cuDNN convolutions), GFLOP/s, and MFU
against the device's dense peak for the compute dtype
(``experiments.bench_records.PEAK_FLOPS``; ``null`` where the device has no entry, e.g.
CPUs), and the ratio to each torch variant on the same input. JSON lines go to
stdout and ``--out`` (appended), a markdown table to stdout and ``<out>.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from experiments.bench_records import (
    add_ratios,
    machine_info,
    markdown,
    summarize,
)


@dataclasses.dataclass
class Runner:
    """One timed variant: ``block()`` runs ``steps_per_block`` steps and waits for them."""

    info: dict
    warmup: Callable[[], None]
    block: Callable[[], None]
    steps_per_block: int
    block_s: list = dataclasses.field(default_factory=list)
    program: object = None  # tljax: the compiled step (K steps per call)


def synthetic_batch(task, batch_size: int, *, seed: int = 0) -> dict:
    """Random host arrays shaped like the task's training batches (labels in range)."""
    rng = np.random.default_rng(seed)

    def images(x):
        shape = (batch_size, *x.shape[1:])
        if np.issubdtype(x.dtype, np.floating):
            return rng.standard_normal(shape).astype(x.dtype)
        return rng.integers(int(x.min()), int(x.max()) + 1, shape).astype(x.dtype)

    labels = rng.integers(0, task.num_classes, batch_size).astype(np.int32)
    return {
        "source": {"image": images(task.source.train.x), "label": labels},
        "target": {"image": images(task.target.train.x)},
    }


def stack(batches: list) -> dict:
    """K batches → one batch with a leading axis of K."""
    return {d: {k: np.stack([b[d][k] for b in batches]) for k in batches[0][d]} for d in batches[0]}


def scan_steps(train_step: Callable, unroll: bool = False) -> Callable:
    """``(state, stacked) -> (state, stacked metrics)``: one step per leading index.

    ``unroll=True`` unrolls the loop fully (no XLA while loop). Why: XLA's CPU backend
    runs the weight-gradient convolutions of a step inside a while body in a
    non-canonical layout through its slow generic emitter (jax-ml/jax#12868), ~15-20×
    slower per step than the same step outside a loop; unrolling avoids the loop at the
    cost of a longer compile.
    """
    import jax

    return lambda state, batches: jax.lax.scan(train_step, state, batches, unroll=unroll)


def host_batches(task, batch_size: int, k: int, *, seed: int = 0) -> dict:
    """The synthetic input of a ``k``-step call (stacked when ``k > 1``)."""
    if k == 1:
        return synthetic_batch(task, batch_size, seed=seed)
    return stack([synthetic_batch(task, batch_size, seed=seed + i) for i in range(k)])


def compile_step(parts: dict, batch, k: int, unroll: bool = False):
    """``jit(step, donate state).lower(...).compile()``, timed.

    Returns:
      ``(compiled, lower_s, compile_s)``.
    """
    import jax

    fn = parts["train_step"] if k == 1 else scan_steps(parts["train_step"], unroll)
    tic = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=0).lower(parts["state"], batch)
    mid = time.perf_counter()
    compiled = lowered.compile()
    return compiled, mid - tic, time.perf_counter() - mid


MEMORY_FIELDS = (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "alias_size_in_bytes",
    "temp_size_in_bytes",
    "generated_code_size_in_bytes",
    "peak_memory_in_bytes",
)


def program_stats(compiled) -> dict:
    """XLA's FLOPs (``cost_analysis``) and memory analysis of a compiled program.

    Returns:
      ``{"xla_flops", "bytes_accessed", "program_bytes", "memory_analysis"}``:
      ``program_bytes`` = arguments + outputs - aliased + temporaries;
      ``memory_analysis`` holds :data:`MEMORY_FIELDS` (``None`` where the backend has no
      memory analysis, a field ``None`` where this jaxlib lacks it).
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    out = {"xla_flops": cost.get("flops"), "bytes_accessed": cost.get("bytes accessed")}
    try:
        m = compiled.memory_analysis()
        mem = {f: getattr(m, f, None) for f in MEMORY_FIELDS}
        mem = {k: None if v is None else int(v) for k, v in mem.items()}
        out["program_bytes"] = (
            mem["argument_size_in_bytes"]
            + mem["output_size_in_bytes"]
            - mem["alias_size_in_bytes"]
            + mem["temp_size_in_bytes"]
        )
        out["memory_analysis"] = mem
    except Exception:  # noqa: BLE001 - not every backend has a memory analysis
        out["program_bytes"] = out["memory_analysis"] = None
    return out


def step_flops(parts: dict, batch) -> int:
    """FLOPs of one train step from its jaxpr (:func:`tljax.flops.count_flops`): traced
    on abstract shapes, nothing is computed or compiled."""
    import jax

    from tljax.flops import count_flops

    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), batch)
    return count_flops(parts["train_step"], parts["state"], spec)


FLOPS_SOURCE = (
    "tljax.flops: dot_general + conv_general_dilated of the single train step's jaxpr "
    "(forward + backward)"
)


def tljax_runners(
    config, parts, *, inputs, ks, steps: int, warmup: int, unroll: bool = False
) -> list[Runner]:
    """Compiles the step for each K and makes one runner per (K, input)."""
    import jax
    import jax.numpy as jnp

    from tljax.data.stream import DomainPairStream

    task, bs = parts["task"], int(config.data.batch_size)
    for k in ks:
        if steps % k:
            raise ValueError(f"steps={steps} must be a multiple of steps_per_call={k}.")
    per_step = step_flops(parts, host_batches(task, bs, 1, seed=config.seed))
    compiled_k = {}
    for k in ks:
        batch = jax.device_put(host_batches(task, bs, k, seed=config.seed))
        compiled_k[k] = (batch, *compile_step(parts, batch, k, unroll))
    # XLA's own count, for reference: of the single-step program only (it counts a while
    # loop's body once), so null when no K=1 program was compiled.
    xla_flops = program_stats(compiled_k[1][1])["xla_flops"] if 1 in compiled_k else None
    runners = []
    for k in ks:
        batch, compiled, lower_s, compile_s = compiled_k[k]
        stats = program_stats(compiled)
        for inp in inputs:
            box = {"state": jax.tree.map(jnp.copy, parts["state"]), "m": None}
            stream = DomainPairStream(task, bs, seed=config.seed)

            def call(inp=inp, box=box, stream=stream, batch=batch, compiled=compiled, k=k):
                if inp == "synthetic":
                    b = batch
                elif k == 1:
                    b = jax.device_put(next(stream))
                else:
                    b = jax.device_put(stack([next(stream) for _ in range(k)]))
                box["state"], box["m"] = compiled(box["state"], b)

            def run(n_calls, call=call, box=box):
                for _ in range(n_calls):
                    call()
                jax.block_until_ready((box["state"], box["m"]))

            info = {
                "framework": "tljax",
                "variant": "jit" if k == 1 else ("jit+scan(unroll)" if unroll else "jit+scan"),
                "input": inp,
                "steps_per_call": k,
                "lower_s": lower_s,
                "compile_cold_s": lower_s + compile_s,
                "program_bytes": stats["program_bytes"],
                "memory_analysis": stats["memory_analysis"],
                "flops_per_step": per_step,
                "flops_source": FLOPS_SOURCE,
                "xla_flops": xla_flops,
                "dtype": config.model.dtype,
            }
            runners.append(
                Runner(
                    info,
                    lambda run=run, k=k: run(max(1, -(-warmup // k))),
                    lambda run=run, k=k: run(steps // k),
                    steps,
                    program=compiled,
                )
            )
    return runners


def measure(runners: list[Runner], blocks: int) -> None:
    """Warms every runner up, then times ``blocks`` interleaved rounds of blocks (the
    order alternates each round so no runner always follows the same one)."""
    for r in runners:
        r.warmup()
    for b in range(blocks):
        for r in runners if b % 2 == 0 else runners[::-1]:
            tic = time.perf_counter()
            r.block()
            r.block_s.append(time.perf_counter() - tic)


def warm_compile_times(config, ks, *, unroll: bool = False, timeout: float = 1800) -> dict:
    """Compile times in two fresh subprocesses sharing a new persistent cache.

    Returns:
      ``{"fill": {k: {...}}, "warm": {k: {...}}}``: per K, ``lower_s``, ``compile_s``
      and the cache hits seen while compiling the step.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = {}
    with tempfile.TemporaryDirectory(prefix="tljax_bench_cache_") as d:
        with open(os.path.join(d, "config.pkl"), "wb") as f:
            pickle.dump(config, f)
        code = (
            f"import sys; sys.path.insert(0, {root!r}); from experiments.bench import "
            f"_compile_child; _compile_child({d!r}, {list(ks)!r}, {unroll!r})"
        )
        for phase in ("fill", "warm"):
            proc = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=root,
            )
            if proc.returncode:
                raise RuntimeError(f"compile subprocess ({phase}) failed:\n{proc.stderr[-3000:]}")
            out[phase] = {int(k): v for k, v in json.loads(proc.stdout.splitlines()[-1]).items()}
    return out


def _compile_child(workdir: str, ks, unroll: bool = False) -> None:
    """Subprocess body of :func:`warm_compile_times`: prints ``{k: times}`` as JSON."""
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    events = []
    jax.monitoring.register_event_listener(lambda e, **kw: events.append(e))
    from tljax.loop import build

    with open(os.path.join(workdir, "config.pkl"), "rb") as f:
        config = pickle.load(f)
    parts = build(config)
    res = {}
    for k in ks:
        batch = jax.device_put(
            host_batches(parts["task"], int(config.data.batch_size), k, seed=config.seed)
        )
        del events[:]
        _, lower_s, compile_s = compile_step(parts, batch, k, unroll)
        hits = sum(e == "/jax/compilation_cache/cache_hits" for e in events)
        res[k] = {"lower_s": lower_s, "compile_s": compile_s, "cache_hits": hits}
    print(json.dumps(res))


def bench(
    config,
    *,
    parts: dict | None = None,
    config_name: str = "",
    inputs=("synthetic", "pipeline"),
    ks=(1,),
    blocks: int = 5,
    steps: int = 50,
    warmup: int = 10,
    warm_compile: bool = True,
    unroll: bool = False,
    torch_variants=(),
    torch_threads: int | None = None,
) -> list[dict]:
    """Benchmarks one config; returns one record per variant (see ``bench_records.FIELDS``).

    Args:
      config: a tljax config.
      parts: ``tljax.loop.build(config)`` if already built.
      config_name: how the records name the config (its file and overrides).
      inputs: of ``"synthetic"`` and ``"pipeline"``.
      ks: steps per compiled call; each must divide ``steps``.
      blocks: timed blocks per variant (interleaved across variants).
      steps: steps per block.
      warmup: warm-up steps per variant (at least one call).
      warm_compile: measure the warm (persistent cache) compile in subprocesses.
      unroll: unroll the K-step scan fully (see :func:`scan_steps`).
      torch_variants: names from ``experiments.torch_reference.VARIANTS`` ('' = none).
      torch_threads: ``torch.set_num_threads`` (default: the CPU count).
    """
    from tljax.loop import build

    bad = set(inputs) - {"synthetic", "pipeline"}
    if bad or not inputs:
        raise ValueError(f"inputs={list(inputs)}; valid: ['synthetic', 'pipeline'].")
    if blocks < 1 or steps < 1 or any(int(k) < 1 for k in ks):
        raise ValueError(f"blocks={blocks}, steps={steps}, ks={list(ks)} must all be >= 1.")
    parts = parts or build(config)
    machine = machine_info()
    runners = tljax_runners(
        config, parts, inputs=inputs, ks=ks, steps=steps, warmup=warmup, unroll=unroll
    )
    if torch_variants:
        from experiments.torch_reference import runners as torch_runners

        runners += torch_runners(
            config,
            parts,
            inputs=inputs,
            variants=torch_variants,
            steps=steps,
            warmup=warmup,
            threads=torch_threads or os.cpu_count(),
        )
    measure(runners, blocks)
    machine["load_avg_end"] = list(os.getloadavg())
    warm, warm_error = None, ""
    if warm_compile:
        try:
            warm = warm_compile_times(config, ks, unroll=unroll)
        except (RuntimeError, subprocess.TimeoutExpired) as e:  # keep the timings anyway
            warm_error = f"; warm compile failed: {str(e).strip().splitlines()[-1][:300]}"
    records = []
    for r in runners:
        if r.info["framework"] == "tljax":
            k = r.info["steps_per_call"]
            if warm is None:
                r.info["compile_warm_s"] = None
                r.info["compile_note"] = "cold: lower+compile here; warm not measured" + warm_error
            else:
                w = warm["warm"][k]
                r.info["compile_warm_s"] = w["lower_s"] + w["compile_s"]
                r.info["compile_fill_s"] = sum(warm["fill"][k][x] for x in ("lower_s", "compile_s"))
                r.info["compile_warm_cache_hits"] = w["cache_hits"]
                r.info["compile_note"] = (
                    "cold: lower+compile here; warm: lower+compile in a fresh process with "
                    "the persistent cache filled by another"
                )
        records.append(summarize(r, config, parts, config_name=config_name, machine=machine))
    add_ratios(records)
    return records


def main(argv):
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if f.blocks < 5:
        raise ValueError(f"--blocks={f.blocks}: use at least 5 timed blocks for a spread.")
    inputs = ("synthetic", "pipeline") if f.input == "both" else (f.input,)
    overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
    from ml_collections import config_flags

    path = config_flags.get_config_filename(f["config"])
    name = " ".join([f"--config={path}", *overrides])
    variants = tuple(f.torch_variants) if f.torch else ()
    records = bench(
        _CONFIG.value,
        config_name=name,
        inputs=inputs,
        ks=tuple(int(k) for k in f.steps_per_call),
        blocks=f.blocks,
        steps=f.steps,
        warmup=f.warmup,
        warm_compile=f.warm_compile,
        unroll=f.scan_unroll,
        torch_variants=variants,
        torch_threads=f.torch_threads or None,
    )
    command = " ".join(["python -m experiments.bench", *sys.argv[1:]])
    for r in records:
        r["command"] = command
        print(json.dumps(r), flush=True)
    table = markdown(records)
    for r in records:
        for variant, v in r["vs_torch"].items():
            print(
                f"tljax {r['variant']} K={r['steps_per_call']} / torch {variant}, {r['input']}: "
                f"{v['ratio']:.2f}x (per-round {v['round_min']:.2f}-{v['round_max']:.2f})"
            )
    print(table)
    if f.out:
        os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
        with open(f.out, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        m = records[0]["machine"]
        with open(os.path.splitext(f.out)[0] + ".md", "a") as fh:
            fh.write(f"`{command}`\n\n{m}\n\n{table}\n")


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
    flags.DEFINE_enum("input", "both", ["both", "synthetic", "pipeline"], "Input source.")
    flags.DEFINE_list("steps_per_call", ["1"], "K steps per compiled call (lax.scan); a list.")
    flags.DEFINE_integer("blocks", 5, "Timed blocks per variant (>= 5).")
    flags.DEFINE_integer("steps", 50, "Steps per timed block (a multiple of every K).")
    flags.DEFINE_integer("warmup", 10, "Warm-up steps per variant.")
    flags.DEFINE_bool("warm_compile", True, "Measure the warm-cache compile (subprocesses).")
    flags.DEFINE_bool("scan_unroll", False, "Unroll the K-step scan (see scan_steps).")
    flags.DEFINE_bool("torch", False, "Also time the PyTorch reference (needs torch).")
    flags.DEFINE_list("torch_variants", ["eager"], "Of eager, compile, bf16_compile.")
    flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: the CPU count).")
    flags.DEFINE_string("out", "", "Append JSON lines here (and the table to <out>.md).")
    flags.mark_flags_as_required(["config"])
    app.run(main)

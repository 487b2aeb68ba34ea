r"""Speed of N vmapped seeds vs N sequential runs of the same train step.

    python -m experiments.bench_seeds --out=runs/bench_seeds [--members=8] \
        [--batch_sizes=32,8] [--blocks=5] [--steps_per_block=20]

The setting is ``configs/dann_digits_m.py`` (LeNet, DANN, digits → digits-M) at each batch
size. *Sequential*: N states, one jit-compiled ``train_step`` (compiled once, shared),
called for each member in turn every step, as N separate runs would. *Vmapped*: one
jit-compiled ``vmap(train_step)`` over the stacked states (:mod:`tljax.multiseed`).
*Map*: one jit-compiled ``lax.map`` over the stacked states (``chunk=1``: the members one
after the other inside the program).
Both consume the same pre-staged device batches (the input pipeline is not timed), the
state is donated, and each timed block of ``steps_per_block`` steps ends with
``block_until_ready``. Compile time (``lower().compile()``) and one warm-up block are
measured separately. Throughput is member-steps per second (N × steps / time).

Writes ``bench.jsonl`` (one line per setting and mode) and ``bench.md`` to ``--out``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script)."""
    flags.DEFINE_string("out", "runs/bench_seeds", "Output directory.")
    flags.DEFINE_integer("members", 8, "Seeds trained at once.")
    flags.DEFINE_list("batch_sizes", ["32", "8"], "Per-domain batch sizes.")
    flags.DEFINE_integer("blocks", 5, "Timed blocks (>= 5 for a spread).")
    flags.DEFINE_integer("steps_per_block", 20, "Steps per timed block.")
    flags.DEFINE_string("config", "configs/dann_digits_m.py", "Config file.")
    flags.DEFINE_list("modes", ["sequential", "vmap"], "Of sequential, vmap, map.")


def _blocks(run_block, n_blocks: int) -> list[float]:
    run_block()  # warm-up (first dispatch, allocation)
    times = []
    for _ in range(n_blocks):
        tic = time.perf_counter()
        run_block()
        times.append(time.perf_counter() - tic)
    return times


def bench(config, members: int, n_blocks: int, steps: int, modes=("sequential", "vmap")):
    """Times sequential, vmapped (and ``lax.map``-ped) training of ``members`` seeds.

    ``modes`` must start with ``"sequential"``, the reference of the speed-ups.

    Returns:
      One record per mode with compile time, block times and member-steps/s.
    """
    import copy

    import jax

    from tljax import loop, multiseed
    from tljax.data.stream import DomainPairStream

    configs = []
    for s in range(members):
        c = copy.deepcopy(config)
        c.seed = s
        configs.append(c)
    if not modes or modes[0] != "sequential" or set(modes) - set(_MODES):
        raise ValueError(f"modes={modes} must start with 'sequential'; valid: {list(_MODES)}.")
    parts, stacked, vstep = multiseed.build_members(configs)
    states = [multiseed.unstack(stacked, i) for i in range(members)]
    streams = [DomainPairStream(parts["task"], c.data.batch_size, seed=c.seed) for c in configs]
    per_member = [[jax.device_put(next(s)) for _ in range(steps)] for s in streams]
    stacked_batches = [
        jax.device_put(loop._stack([per_member[i][k] for i in range(members)]))
        for k in range(steps)
    ]

    tic = time.perf_counter()
    seq = jax.jit(parts["train_step"], donate_argnums=0).lower(states[0], per_member[0][0])
    seq = seq.compile()
    seq_compile = time.perf_counter() - tic
    compiled, compile_s = {}, {"sequential": seq_compile}
    for mode in modes[1:]:
        fn = vstep if mode == "vmap" else multiseed.build_members(configs, chunk=1)[2]
        tic = time.perf_counter()
        compiled[mode] = jax.jit(fn, donate_argnums=0).lower(stacked, stacked_batches[0])
        compiled[mode] = compiled[mode].compile()
        compile_s[mode] = time.perf_counter() - tic

    def seq_block():
        for k in range(steps):
            for i in range(members):
                states[i], _ = seq(states[i], per_member[i][k])
        jax.block_until_ready(states)

    box = {m: jax.tree.map(lambda x: x.copy(), stacked) for m in modes[1:]}

    def stacked_block(mode, fn):
        def run():
            for k in range(steps):
                box[mode], _ = fn(box[mode], stacked_batches[k])
            jax.block_until_ready(box[mode])

        return run

    out = []
    for mode in modes:
        fn = seq_block if mode == "sequential" else stacked_block(mode, compiled[mode])
        times = _blocks(fn, n_blocks)
        rates = [members * steps / t for t in times]
        out.append(
            {
                "mode": mode,
                "members": members,
                "batch_size": int(config.data.batch_size),
                "steps_per_block": steps,
                "compile_s": compile_s[mode],
                "block_s": times,
                "member_steps_per_s": statistics.median(rates),
                "member_steps_per_s_min": min(rates),
                "member_steps_per_s_max": max(rates),
            }
        )
    for r in out[1:]:
        r["speedup"] = r["member_steps_per_s"] / out[0]["member_steps_per_s"]
    return out


_MODES = {
    "sequential": "sequential runs (one jitted step each)",
    "vmap": "vmapped, one program (chunk=None)",
    "map": "lax.map, one program (chunk=1)",
}


def markdown(records: list[dict]) -> str:
    """The results as a markdown table."""
    head = "| batch/domain | mode | compile (s) | member-steps/s (median [min, max]) | speed-up |"
    lines = [head, "|---|---|---|---|---|"]
    for r in records:
        rate = (
            f"{r['member_steps_per_s']:.1f} "
            f"[{r['member_steps_per_s_min']:.1f}, {r['member_steps_per_s_max']:.1f}]"
        )
        speed = f"{r['speedup']:.2f}×" if "speedup" in r else "1 (reference)"
        mode = f"{r['members']} {_MODES[r['mode']]}"
        lines.append(f"| {r['batch_size']} | {mode} | {r['compile_s']:.1f} | {rate} | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.members < 1 or FLAGS.blocks < 1 or FLAGS.steps_per_block < 1:
        raise app.UsageError("--members, --blocks and --steps_per_block must be >= 1.")
    import jax

    from experiments.sweep import load_config

    machine = {
        "device": str(jax.devices()[0]),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "jax": jax.__version__,
        "python": platform.python_version(),
        "command": " ".join(["python -m experiments.bench_seeds", *sys.argv[1:]]),
    }
    os.makedirs(FLAGS.out, exist_ok=True)
    records = []
    for bs in FLAGS.batch_sizes:
        config = load_config(FLAGS.config)
        config.data.batch_size = int(bs)
        for r in bench(
            config, FLAGS.members, FLAGS.blocks, FLAGS.steps_per_block, tuple(FLAGS.modes)
        ):
            r.update(config=FLAGS.config, **machine)
            records.append(r)
            print(json.dumps(r), flush=True)
    with open(os.path.join(FLAGS.out, "bench.jsonl"), "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    table = markdown(records)
    with open(os.path.join(FLAGS.out, "bench.md"), "w") as f:
        f.write(f"{machine}\n\n{table}")
    print(table)


if __name__ == "__main__":
    define_flags()
    app.run(main)

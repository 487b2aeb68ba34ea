r"""Where the train step's time goes: a ``jax.profiler`` trace of a few steps, summed per op.

    python -m experiments.profile_step --config=configs/dann_digits_m.py \
        [--config.data.batch_size=128] [--steps=3] [--top=18] [--trace_dir=/tmp/tljax_prof]

Compiles the config's step as ``experiments.bench`` does (synthetic inputs on the device,
state donated), warms it up, traces ``--steps`` steps, and prints the wall time of the
traced block and the time of every named XLA op summed over the host threads (per step
and as a share of all named op time). On XLA:CPU the convolution thunks carry no trace
event: their time is the block's time minus the named ops'.
"""

from __future__ import annotations

import collections
import glob
import time


def profile(config, *, steps: int = 3, trace_dir: str = "/tmp/tljax_prof") -> dict:
    """Returns ``{"block_s": ..., "steps": ..., "ops": {name: seconds summed}}``."""
    import jax

    from experiments import bench
    from tljax.loop import build

    parts = build(config)
    runner = bench.tljax_runners(
        config, parts, inputs=("synthetic",), ks=(1,), steps=steps, warmup=steps
    )[0]
    runner.warmup()
    with jax.profiler.trace(trace_dir):
        tic = time.perf_counter()
        runner.block()
        block_s = time.perf_counter() - tic
    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    data = jax.profiler.ProfileData.from_file(path)
    ops = collections.Counter()
    skip = ("PjRt", "Thunk", "$", "XlaModule", "Execute", "ParallelLoopRunner", "jit_", "Pjit")
    for plane in data.planes:
        if "CPU" not in plane.name:
            continue
        for line in plane.lines:
            if line.name == "python":
                continue
            for ev in line.events:
                if not ev.name.startswith(skip):
                    ops[ev.name] += ev.duration_ns * 1e-9
    return {"block_s": block_s, "steps": steps, "ops": dict(ops)}


def main(argv):
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    res = profile(_CONFIG.value, steps=f.steps, trace_dir=f.trace_dir)
    n, ops = res["steps"], res["ops"]
    named = sum(ops.values())
    print(f"block: {1e3 * res['block_s'] / n:.1f} ms/step over {n} steps; named ops "
          f"{1e3 * named / n:.1f} ms/step; the rest (untraced, e.g. CPU convolutions) "
          f"{1e3 * (res['block_s'] - named) / n:.1f} ms/step")  # fmt: skip
    for name, s in sorted(ops.items(), key=lambda kv: -kv[1])[: f.top]:
        print(f"{100 * s / named:5.1f}%  {1e3 * s / n:7.2f} ms/step  {name}")


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
    flags.DEFINE_integer("steps", 3, "Steps in the traced block.")
    flags.DEFINE_integer("top", 18, "Ops to print.")
    flags.DEFINE_string("trace_dir", "/tmp/tljax_prof", "Where the trace is written.")
    flags.mark_flags_as_required(["config"])
    app.run(main)

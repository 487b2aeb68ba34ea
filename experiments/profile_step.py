r"""Where the train step's time goes: a ``jax.profiler`` trace of a few steps, summed per op.

    python -m experiments.profile_step --config=configs/dann_digits_m.py \
        [--config.data.batch_size=128] [--steps=3] [--top=18] [--trace_dir=/tmp/tljax_prof] \
        [--json=OUT.json] [--hlo=OUT.hlo.txt.gz]

Compiles the config's step as ``experiments.bench`` does (synthetic inputs on the device,
state donated), warms it up, traces ``--steps`` steps, and prints the wall time of the
traced block and the time of every named XLA op summed (per step and as a share of all
named op time), and the same time summed per op category (convolution, matmul,
reduction fusion, elementwise fusion, copy/transpose, ...).

On a GPU the ops are the device's kernels (the profiler's "XLA Ops" line of the GPU
plane); ``--hlo`` writes the optimised HLO of the step, so an op name (``fusion.123``)
can be looked up in it. On XLA:CPU the ops are summed over the host threads, and the
convolution thunks carry no trace event: their time is the block's time minus the named
ops'.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import re
import time

_CATEGORIES = (  # first match wins; tested on the op's name and its HLO text
    ("convolution", r"cudnn|convolution|conv"),
    ("matmul", r"gemm|cublas|dot\b|dot\.|__triton_gemm"),
    ("reduction fusion", r"kind=kInput|reduce|multi_output"),
    ("copy/transpose", r"\bcopy|transpose|kind=kCopy"),
    ("elementwise fusion", r"kind=kLoop|fusion|loop"),
    ("collective", r"all-reduce|all-gather|reduce-scatter|nccl"),
)


def category(name: str, text: str = "") -> str:
    """The category of an op from its name and HLO text (``"other"`` if none fits)."""
    for cat, pat in _CATEGORIES:
        if re.search(pat, f"{name} {text}", re.IGNORECASE):
            return cat
    return "other"


def _stats(ev) -> dict:
    try:
        return {k: v for k, v in ev.stats}
    except Exception:  # noqa: BLE001 - the stats API differs across jax versions
        return {}


def _device_ops(data) -> tuple[collections.Counter, dict]:
    """Per-op device time of the GPU/TPU planes (empty if there are none)."""
    ops, text = collections.Counter(), {}
    for plane in data.planes:
        if not plane.name.startswith("/device:") or "CPU" in plane.name:
            continue
        lines = list(plane.lines)
        chosen = [ln for ln in lines if ln.name == "XLA Ops"] or [
            ln for ln in lines if ln.name not in ("XLA Modules", "Steps", "Launch Stats")
        ]
        for line in chosen:
            for ev in line.events:
                ops[ev.name] += ev.duration_ns * 1e-9
                if ev.name not in text:
                    s = _stats(ev)
                    text[ev.name] = str(s.get("long_name") or s.get("hlo_op") or "")[:300]
    return ops, text


def _host_ops(data) -> collections.Counter:
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
    return ops


def profile(config, *, steps: int = 3, trace_dir: str = "/tmp/tljax_prof") -> dict:
    """Returns ``{"block_s", "steps", "device", "ops": {name: s}, "op_text": {name: hlo},
    "categories": {category: s}, "hlo": optimised HLO text}``."""
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
    ops, text = _device_ops(data)
    device = "device" if ops else "host"
    if not ops:
        ops, text = _host_ops(data), {}
    cats = collections.Counter()
    for name, s in ops.items():
        cats[category(name, text.get(name, ""))] += s
    return {
        "block_s": block_s,
        "steps": steps,
        "device": device,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "ops": dict(ops),
        "op_text": text,
        "categories": dict(cats),
        "hlo": runner.program.as_text() if runner.program is not None else "",
    }


def report(res: dict, top: int = 18) -> str:
    """The printed summary of :func:`profile`'s result."""
    n, ops = res["steps"], res["ops"]
    named = sum(ops.values()) or 1e-30
    where = "device kernels" if res["device"] == "device" else "named host ops"
    lines = [
        f"{res['platform']} {res['device_kind']}: block {1e3 * res['block_s'] / n:.2f} ms/step "
        f"over {n} steps; {where} {1e3 * named / n:.2f} ms/step"
    ]
    if res["device"] == "host":
        rest = 1e3 * (res["block_s"] - named) / n
        lines.append(f"the rest (untraced, e.g. CPU convolutions) {rest:.1f} ms/step")
    lines.append("by category:")
    for cat, s in sorted(res["categories"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{100 * s / named:5.1f}%  {1e3 * s / n:8.3f} ms/step  {cat}")
    lines.append(f"top {top} ops:")
    for name, s in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
        t = res["op_text"].get(name, "")
        lines.append(f"{100 * s / named:5.1f}%  {1e3 * s / n:8.3f} ms/step  {name}  {t[:120]}")
    return "\n".join(lines)


def main(argv):
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    res = profile(_CONFIG.value, steps=f.steps, trace_dir=f.trace_dir)
    print(report(res, f.top))
    if f.hlo:
        with gzip.open(f.hlo, "wt") as fh:
            fh.write(res["hlo"])
    if f.json:
        with open(f.json, "w") as fh:
            json.dump({k: v for k, v in res.items() if k != "hlo"}, fh, indent=1)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
    flags.DEFINE_integer("steps", 3, "Steps in the traced block.")
    flags.DEFINE_integer("top", 18, "Ops to print.")
    flags.DEFINE_string("trace_dir", "/tmp/tljax_prof", "Where the trace is written.")
    flags.DEFINE_string("json", "", "Also write the per-op result as JSON here.")
    flags.DEFINE_string("hlo", "", "Also write the step's optimised HLO here (gzip text).")
    flags.mark_flags_as_required(["config"])
    app.run(main)

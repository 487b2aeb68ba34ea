"""Records of :mod:`experiments.bench`: one JSON-able dict per timed variant, the ratios to
the PyTorch reference, the machine they were measured on, and the markdown table.

Every record has the fields of :data:`FIELDS` (a value is ``null`` where its ``*_note``
says why); :func:`summarize` builds one from a timed runner, :func:`add_ratios` fills
``vs_torch`` across a run's records.
"""

from __future__ import annotations

import os
import platform
import re
import time

import numpy as np

# Dense peak FLOP/s (no 2:4 sparsity) by device and compute mode (see compute_mode):
# name -> (regular expression searched in ``device.device_kind``, first match wins,
# {mode: FLOP/s}). NVIDIA's datasheets quote tensor-core rates *with sparsity*; dense is
# half. H100 SXM and H200 SXM share the GH100 die, SM count and clocks (the H200 changes
# only the memory): bf16 1,979 -> 989.4, tf32 989 -> 494.7, fp32 (CUDA cores) 66.9 — the
# Hopper whitepaper's table as listed at https://glennklockwood.com/garden/processors/h100.
# H100 PCIe: bf16 1,513 -> 756, tf32 756 -> 378, fp32 51 (H100 datasheet). A100 (SXM and
# PCIe): bf16 312, tf32 156, fp32 19.5 (A100 datasheet). NVL parts (and everything else)
# are left out on purpose: no MFU rather than a wrong one.
PEAK_FLOPS = {
    "H100 PCIe": (r"H100 PCIe", {"bf16": 756e12, "tf32": 378e12, "fp32": 51e12}),
    "H100 SXM": (r"H100(?!.*(PCIe|NVL))", {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),
    "H200 SXM": (r"(?<!G)H200(?!.*NVL)", {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),
    "A100": (r"A100", {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
}


# Fields every record has (values may be null where the record says why).
FIELDS = (
    "framework", "variant", "input", "steps_per_call", "config", "task", "method",
    "backbone", "batch_per_domain", "dtype", "image_shape", "blocks", "steps_per_block",
    "block_s", "steps_per_s", "img_per_s", "ms_per_step", "compile_cold_s",
    "compile_warm_s", "compile_note", "peak_bytes_in_use", "peak_memory_note",
    "program_bytes", "memory_analysis", "flops_per_step", "flops_source", "xla_flops",
    "flops_per_s", "peak_flops_per_s", "peak_name", "mfu", "mfu_note", "vs_torch",
    "device", "machine",
)  # fmt: skip


def compute_mode(dtype: str) -> str:
    """The tensor-core mode a step of compute ``dtype`` runs its matmuls/convs in on a GPU.

    bfloat16/float16 → ``"bf16"``. float32 → ``"tf32"``: JAX's default precision lets the
    GPU compute float32 matmuls and convolutions on TF32 tensor cores
    (https://docs.jax.dev/en/latest/201/precision.html) — unless
    ``jax_default_matmul_precision`` asks for full float32 (``"highest"``, ``"float32"``,
    ``"F32_F32_F32"``) or ``NVIDIA_TF32_OVERRIDE=0`` disables TF32, then ``"fp32"``.
    """
    import jax

    if dtype in ("bfloat16", "float16"):
        return "bf16"
    if dtype != "float32":
        raise ValueError(f"compute dtype {dtype!r}; valid: bfloat16, float16, float32.")
    precision = str(jax.config.jax_default_matmul_precision or "").lower()
    if precision in ("highest", "float32", "f32_f32_f32") or (
        os.environ.get("NVIDIA_TF32_OVERRIDE") == "0"
    ):
        return "fp32"
    return "tf32"


def peak_flops(device, dtype: str) -> tuple[float | None, str]:
    """The device's dense peak FLOP/s for compute ``dtype`` and its name
    (e.g. ``"H200 tf32 dense"``), or ``None`` and why (see :data:`PEAK_FLOPS`)."""
    kind = getattr(device, "device_kind", str(device))
    mode = compute_mode(dtype)
    for name, (pattern, peaks) in PEAK_FLOPS.items():
        if re.search(pattern, kind):
            return peaks[mode], f"{name} {mode} dense"
    return None, (
        f"no peak FLOP/s for device kind {kind!r} ({device.platform}) in PEAK_FLOPS "
        f"(known: {list(PEAK_FLOPS)})"
    )


def device_peak_memory(device) -> tuple[int | None, str]:
    """Peak bytes in use on the device so far, or ``None`` and why."""
    stats = device.memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), (
            "memory_stats()['peak_bytes_in_use'], process-wide peak after all variants"
        )
    return None, f"device.memory_stats() has no peak_bytes_in_use on {device.platform}"


def _spread(values) -> dict:
    return {
        "median": float(np.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def summarize(runner, config, parts, *, config_name: str, machine: dict) -> dict:
    """The record of one timed ``experiments.bench.Runner`` (see :data:`FIELDS`)."""
    import jax

    info, task = dict(runner.info), parts["task"]
    device = jax.devices()[0]
    bs, n = int(config.data.batch_size), runner.steps_per_block
    rates = [n / t for t in runner.block_s]
    torch_side = info["framework"] == "torch"
    if torch_side:
        from experiments.torch_reference import peak_memory_bytes

        peak, peak_note = peak_memory_bytes(info["torch_device"])
        first = info.pop("first_step").get("s")
        compiled = "compile" in info["variant"]
        info["compile_cold_s"] = first if compiled else None
        info["compile_note"] = (
            "first step (torch.compile traces and compiles lazily), fresh inductor cache"
            if compiled
            else "eager: nothing to compile"
        )
        info["first_step_s"] = first
        dev_name, dev_kind = info["torch_device"], info["torch_device"]
    else:
        peak, peak_note = device_peak_memory(device)
        info.setdefault("compile_note", "cold: lower+compile in this process")
        dev_name, dev_kind = str(device), device.device_kind
    peak_fl, peak_fl_note = peak_flops(device, info["dtype"])
    if torch_side and info["torch_device"] == "cpu":
        peak_fl, peak_fl_note = None, "no peak FLOP/s table for CPUs"
    med = float(np.median(rates))
    flops = info.get("flops_per_step")
    rate = flops * med if flops else None
    rec = {
        **info,
        "config": config_name,
        "task": task.name,
        "method": config.method.name,
        "backbone": config.model.backbone,
        "batch_per_domain": bs,
        "image_shape": list(task.source.train.x.shape[1:]),
        "blocks": len(runner.block_s),
        "steps_per_block": n,
        "block_s": runner.block_s,
        "steps_per_s": _spread(rates),
        "img_per_s": _spread([2 * bs * r for r in rates]),
        "ms_per_step": _spread([1e3 / r for r in rates]),
        "compile_warm_s": info.get("compile_warm_s"),
        "peak_bytes_in_use": peak,
        "peak_memory_note": peak_note,
        "memory_analysis": info.get("memory_analysis"),
        "xla_flops": info.get("xla_flops"),
        "flops_per_s": rate,
        "peak_flops_per_s": peak_fl,
        "peak_name": peak_fl_note if peak_fl else None,
        "mfu": rate / peak_fl if (rate and peak_fl) else None,
        "mfu_note": (
            f"flops_per_step x median steps/s / {peak_fl_note} peak {peak_fl / 1e12:g} TFLOP/s"
            if peak_fl
            else peak_fl_note
        ),
        "vs_torch": {},
        "device": {"name": dev_name, "kind": dev_kind},
        "machine": machine,
    }
    return rec


def add_ratios(records: list[dict]) -> None:
    """``vs_torch[variant]`` on each tljax record: its steps/s over the torch variant's on
    the same input (ratio of medians, and the range of the per-round ratios)."""
    torch_recs = [r for r in records if r["framework"] == "torch"]
    for r in records:
        if r["framework"] != "tljax":
            continue
        for t in torch_recs:
            if t["input"] != r["input"]:
                continue
            per_round = [
                (r["steps_per_block"] / a) / (t["steps_per_block"] / b)
                for a, b in zip(r["block_s"], t["block_s"])
            ]
            r["vs_torch"][t["variant"]] = {
                "ratio": r["steps_per_s"]["median"] / t["steps_per_s"]["median"],
                "round_min": min(per_round),
                "round_max": max(per_round),
            }


def machine_info() -> dict:
    """Host, load and versions, recorded with every number."""
    import jax

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "load_avg_start": list(os.getloadavg()),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "platform": jax.devices()[0].platform,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _fmt(x, spec=".1f", scale=1.0):
    return "–" if x is None else format(x * scale, spec)


def _temp_args(r: dict) -> int | None:
    """XLA's temporaries + arguments of the record's compiled program (bytes)."""
    m = r.get("memory_analysis")
    if not m or m.get("temp_size_in_bytes") is None:
        return None
    return m["temp_size_in_bytes"] + m["argument_size_in_bytes"]


def markdown(records: list[dict]) -> str:
    """The records as a markdown table. GFLOP/step is the jaxpr count (tljax.flops; torch:
    FlopCounterMode), MFU is against the record's ``peak_name``; ``XLA temp+args`` is the
    compiled program's memory analysis, ``peak`` the device's measured process-wide peak
    (``memory_stats()``; torch: ``max_memory_allocated``)."""
    lines = [
        "| framework | variant | input | K | batch/domain | dtype | steps/s median [min, max] "
        "| img/s | ms/step | compile cold / warm (s) | GFLOP/step | GFLOP/s | MFU "
        "| XLA temp+args (GB) | peak (GB) | × torch eager [round range] |",
        "|" + "---|" * 16,
    ]
    for r in records:
        s, v = r["steps_per_s"], r["vs_torch"].get("eager")
        ratio = (
            "–" if v is None else f"{v['ratio']:.2f} [{v['round_min']:.2f}, {v['round_max']:.2f}]"
        )
        lines.append(
            f"| {r['framework']} | {r['variant']} | {r['input']} | {r['steps_per_call']} | "
            f"{r['batch_per_domain']} | {r['dtype']} | {s['median']:.1f} [{s['min']:.1f}, "
            f"{s['max']:.1f}] | {r['img_per_s']['median']:.0f} | "
            f"{r['ms_per_step']['median']:.2f} | {_fmt(r['compile_cold_s'], '.2f')} / "
            f"{_fmt(r['compile_warm_s'], '.2f')} | {_fmt(r['flops_per_step'], '.2f', 1e-9)} | "
            f"{_fmt(r['flops_per_s'], '.0f', 1e-9)} | {_fmt(r['mfu'], '.1%')} | "
            f"{_fmt(_temp_args(r), '.3g', 1e-9)} | {_fmt(r['peak_bytes_in_use'], '.3g', 1e-9)} "
            f"| {ratio} |"
        )
    return "\n".join(lines) + "\n"

"""Records of :mod:`experiments.bench`: one JSON-able dict per timed variant, the ratios to
the PyTorch reference, the machine they were measured on, and the markdown table.

Every record has the fields of :data:`FIELDS` (a value is ``null`` where its ``*_note``
says why); :func:`summarize` builds one from a timed runner, :func:`add_ratios` fills
``vs_torch`` across a run's records.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

# Dense peak FLOP/s (vendor datasheets, SXM unless named) by device-kind substring and
# compute dtype. float32 is the non-tensor-core peak; XLA may use TF32 tensor cores for
# float32 convolutions and matmuls (H100 SXM: 495 TFLOP/s), so fp32 MFU can exceed what
# this table suggests is possible — read it as "vs the strict fp32 peak".
PEAK_FLOPS = {
    ("H100 PCIe", "bfloat16"): 756e12,
    ("H100 PCIe", "float32"): 51e12,
    ("H100", "bfloat16"): 989e12,
    ("H100", "float32"): 67e12,
    ("H200", "bfloat16"): 989e12,
    ("H200", "float32"): 67e12,
}


# Fields every record has (values may be null where the record says why).
FIELDS = (
    "framework", "variant", "input", "steps_per_call", "config", "task", "method",
    "backbone", "batch_per_domain", "dtype", "image_shape", "blocks", "steps_per_block",
    "block_s", "steps_per_s", "img_per_s", "ms_per_step", "compile_cold_s",
    "compile_warm_s", "compile_note", "peak_bytes_in_use", "peak_memory_note",
    "program_bytes", "flops_per_step", "flops_source", "peak_flops_per_s", "mfu",
    "mfu_note", "vs_torch", "device", "machine",
)  # fmt: skip


def peak_flops(device, dtype: str) -> tuple[float | None, str]:
    """The device's peak FLOP/s for ``dtype`` from :data:`PEAK_FLOPS`, or ``None`` and why."""
    kind = getattr(device, "device_kind", str(device))
    for (name, dt), value in PEAK_FLOPS.items():
        if name in kind and dt == dtype:
            return value, f"{name} {dt} dense peak {value / 1e12:g} TFLOP/s"
    return None, (
        f"no peak FLOP/s for device kind {kind!r} ({device.platform}) and {dtype} in "
        f"PEAK_FLOPS (known: {sorted({n for n, _ in PEAK_FLOPS})})"
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
        "peak_flops_per_s": peak_fl,
        "mfu": flops * med / peak_fl if (flops and peak_fl) else None,
        "mfu_note": peak_fl_note,
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


def markdown(records: list[dict]) -> str:
    """The records as a markdown table."""
    lines = [
        "| framework | variant | input | K | batch/domain | dtype | steps/s median [min, max] "
        "| img/s | ms/step | compile cold / warm (s) | GFLOP/step | MFU | peak mem (MB) "
        "| × torch eager [round range] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"{_fmt(r['mfu'], '.1%')} | {_fmt(r['peak_bytes_in_use'], '.0f', 1e-6)} | {ratio} |"
        )
    return "\n".join(lines) + "\n"

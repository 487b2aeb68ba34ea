r"""Input-pipeline overhead: the real train step fed by the data pipeline vs the same step
on a batch already on the device.

    python -m experiments.bench_pipeline --config=configs/dann_digits_m.py \
        [--augment=crop_flip] [--blocks=7] [--steps=50] [--out=runs/bench/pipeline.jsonl]

Modes (the step is ``tljax.loop.build``'s, jitted with the state donated, as training):

- ``synthetic``: one batch, put on the device once (no input cost at all);
- ``stream``: ``DomainPairStream`` host gather + ``device_put`` in the loop, every step;
- ``stream+prefetch``: the same through :class:`tljax.data.prefetch.Prefetcher` (depth
  ``config.data.prefetch``): gather and transfer on a background thread (the trainer's
  path);
- ``synthetic+aug`` and ``stream+prefetch+aug``: the same two with
  ``config.data.augment=--augment`` applied in the step (the on-device augmentation).

The timed blocks of all modes are interleaved (block 1 of each, block 2 of each, ...)
so machine load hits them alike; each block ends with ``jax.block_until_ready``.
Reported: steps/s (median and range over blocks), the slowdown of each fed mode against
its synthetic twin (of the medians, and the median over rounds of the slowdown within a
round, which cancels load that drifts between rounds), the host cost of one batch alone
(gather + ``device_put``), and the load average (``uptime``) before and after. JSON
lines go to stdout and ``--out`` (appended), a markdown table to stdout.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import config_flags

from tljax.data.prefetch import Prefetcher
from tljax.data.stream import DomainPairStream
from tljax.loop import build, data_mesh

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_AUGMENT = flags.DEFINE_string("augment", "crop_flip", "data.augment of the +aug modes.")
_BLOCKS = flags.DEFINE_integer("blocks", 7, "Timed blocks per mode.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per block.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Warm-up steps per mode.")
_OUT = flags.DEFINE_string("out", "", "Append JSON lines here too.")


def _summary(rates):
    return {
        "median": float(np.median(rates)),
        "min": float(min(rates)),
        "max": float(max(rates)),
        "blocks": [float(r) for r in rates],
    }


def _paired(fed, base):
    """Median and range over rounds of the slowdown of ``fed`` against ``base`` in the same
    round (adjacent blocks share the machine's load)."""
    s = [100 * (1 - f / b) for f, b in zip(fed, base)]
    return {"median": float(np.median(s)), "min": float(min(s)), "max": float(max(s))}


def main(argv):
    del argv
    config = _CONFIG.value
    load_before = os.getloadavg()
    sharding = NamedSharding(data_mesh(), PartitionSpec("data"))
    plain = build(config)
    with config.unlocked():
        config.data.augment = _AUGMENT.value
    augmented = build(config)
    task, bs, seed = plain["task"], config.data.batch_size, config.seed
    stream = DomainPairStream(task, bs, seed=seed)
    fixed = jax.device_put(next(stream), sharding)

    def runner(parts, feed):
        step = jax.jit(parts["train_step"], donate_argnums=0)
        # A copy per runner: each donates its own state.
        state = jax.tree.map(lambda a: np.array(a, copy=True), parts["state"])
        box = {"state": jax.device_put(state, NamedSharding(data_mesh(), PartitionSpec()))}

        def block(n):
            src = feed()
            out = None
            t = time.perf_counter()
            for _ in range(n):
                box["state"], m = step(box["state"], next(src))
                out = m["loss"]
            jax.block_until_ready(out)
            rate = n / (time.perf_counter() - t)
            if isinstance(src, Prefetcher):
                src.close()
            return rate

        return block

    def synthetic():
        while True:
            yield fixed

    def direct():
        while True:
            yield jax.device_put(next(stream), sharding)

    def prefetched():
        return Prefetcher(
            lambda: jax.device_put(next(stream), sharding),
            stream.get_state,
            depth=config.data.prefetch or 2,
        )

    modes = {
        "synthetic": runner(plain, synthetic),
        "stream": runner(plain, direct),
        "stream+prefetch": runner(plain, prefetched),
        "synthetic+aug": runner(augmented, synthetic),
        "stream+prefetch+aug": runner(augmented, prefetched),
    }
    for block in modes.values():  # compile and warm up
        block(_WARMUP.value)
    rates = {name: [] for name in modes}
    for _ in range(_BLOCKS.value):
        for name, block in modes.items():
            rates[name].append(block(_STEPS.value))
    host = []  # one batch's host gather + transfer alone
    for _ in range(200):
        t = time.perf_counter()
        jax.block_until_ready(jax.device_put(next(stream), sharding))
        host.append(time.perf_counter() - t)
    load_after = os.getloadavg()

    twin = {
        "stream": "synthetic",
        "stream+prefetch": "synthetic",
        "synthetic+aug": "synthetic",
        "stream+prefetch+aug": "synthetic+aug",
    }
    res = {name: _summary(r) for name, r in rates.items()}
    common = {
        "config": f"{config.method.name} {config.data.task}",
        "batch_per_domain": bs,
        "augment": _AUGMENT.value,
        "prefetch": config.data.prefetch or 2,
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "host_batch_ms": 1e3 * float(np.median(host)),
    }
    lines = []
    for name, r in res.items():
        row = {"mode": name, "steps_per_s": r, **common}
        if name in twin:
            row["vs"] = twin[name]
            row["slowdown_pct"] = 100 * (1 - r["median"] / res[twin[name]]["median"])
            row["paired_slowdown_pct"] = _paired(rates[name], rates[twin[name]])
        lines.append(json.dumps(row))
    print("\n".join(lines))
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "a") as f:
            f.write("\n".join(lines) + "\n")
    print(
        f"\n{common['config']}, {bs} per domain, augment={_AUGMENT.value}, "
        f"host batch {common['host_batch_ms']:.2f} ms, load "
        f"{' '.join(f'{x:.2f}' for x in load_before)} -> "
        f"{' '.join(f'{x:.2f}' for x in load_after)}\n"
    )
    print("| mode | steps/s median (min–max) | vs | slowdown of medians | paired slowdown |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in res.items():
        vs, slow, paired = twin.get(name, ""), "", ""
        if vs:
            slow = f"{100 * (1 - r['median'] / res[vs]['median']):.1f}%"
            p = _paired(rates[name], rates[vs])
            paired = f"{p['median']:.1f}% ({p['min']:.1f} to {p['max']:.1f})"
        rate = f"{r['median']:.1f} ({r['min']:.1f}–{r['max']:.1f})"
        print(f"| {name} | {rate} | {vs} | {slow} | {paired} |")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)

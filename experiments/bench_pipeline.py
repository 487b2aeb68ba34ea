r"""Input-pipeline overhead: the real train step fed by the data stream vs a batch
already on the device.

    python -m experiments.bench_pipeline --config=configs/dann_digits_m.py --blocks=5 --steps=50

Prints JSON lines and a markdown row: steps/s (median and range over timed blocks, each
ended by ``block_until_ready``) with synthetic in-device input and with the
``DomainPairStream`` (host NumPy gather + ``device_put`` every step), and the slowdown.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from tljax.data.stream import DomainPairStream
from tljax.loop import build

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_BLOCKS = flags.DEFINE_integer("blocks", 5, "Timed blocks.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per block.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Warm-up steps.")


def _time(fn, blocks, steps):
    rates = []
    for _ in range(blocks):
        t = time.perf_counter()
        out = None
        for _ in range(steps):
            out = fn()
        jax.block_until_ready(out)
        rates.append(steps / (time.perf_counter() - t))
    return rates


def main(argv):
    del argv
    config = _CONFIG.value
    parts = build(config)
    step = jax.jit(parts["train_step"], donate_argnums=0)
    stream = DomainPairStream(parts["task"], config.data.batch_size, seed=config.seed)
    fixed = jax.device_put(next(stream))
    box = {"state": parts["state"]}

    def synthetic():
        box["state"], m = step(box["state"], fixed)
        return m["loss"]

    def fed():
        box["state"], m = step(box["state"], jax.device_put(next(stream)))
        return m["loss"]

    for _ in range(_WARMUP.value):
        synthetic()
    jax.block_until_ready(box["state"].step)
    results = {}
    # Interleave the two modes so machine load affects both alike.
    syn, pipe = [], []
    for _ in range(_BLOCKS.value):
        syn += _time(synthetic, 1, _STEPS.value)
        pipe += _time(fed, 1, _STEPS.value)
    for name, r in (("synthetic", syn), ("pipeline", pipe)):
        results[name] = {"median": float(np.median(r)), "min": float(min(r)), "max": float(max(r))}
        print(
            json.dumps(
                {
                    "mode": name,
                    "steps_per_s": results[name],
                    "batch_per_domain": config.data.batch_size,
                    "device": str(jax.devices()[0]),
                    "jax": jax.__version__,
                }
            )
        )
    slow = 100 * (1 - results["pipeline"]["median"] / results["synthetic"]["median"])
    print(
        f"| {config.method.name} | {config.data.task} | {config.data.batch_size} | "
        f"{results['synthetic']['median']:.1f} ({results['synthetic']['min']:.1f}–"
        f"{results['synthetic']['max']:.1f}) | {results['pipeline']['median']:.1f} "
        f"({results['pipeline']['min']:.1f}–{results['pipeline']['max']:.1f}) | "
        f"{slow:.1f}% |"
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)

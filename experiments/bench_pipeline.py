r"""Input-pipeline overhead: the real train step fed by the data pipeline vs the same step
on a batch already on the device.

    python -m experiments.bench_pipeline --config=configs/dann_digits_m.py \
        [--augment=crop_flip] [--blocks=7] [--steps=50] [--out=runs/bench/pipeline.jsonl]

Real photo files (issue 13): ``--jpeg_dir=DIR`` writes synthetic JPEG files in the
Office-31 layout (31 class folders per domain, ``--jpeg_per_class`` random-texture images
of ``--jpeg_size`` ± 25%, as photos of varied sizes), prepares them TF-free into TFDS's
``array_record`` format in ``DIR/data`` (once; reused when present) and replaces the
config's task by ``office31/amazon->office31/webcam`` on them (every other setting of
the config is kept: e.g. ``configs/bench_photos_synthetic.py``'s ResNet-50 DANN). The
images are then uint8, converted on the device; with ``--stream`` they stay on disk and
every batch is read, JPEG-decoded and resized by
:class:`tljax.data.grain_stream.GrainPairStream` on ``--threads`` threads (in each of
``--workers`` processes, if any):

    python -m experiments.bench_pipeline --config=configs/bench_photos_synthetic.py \
        --jpeg_dir=/tmp/tljax_jpeg --jpeg_per_class=20 --stream --augment=crop_flip

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

from tljax.data.grain_stream import GrainPairStream
from tljax.data.prefetch import Prefetcher
from tljax.data.stream import DomainPairStream
from tljax.loop import build, data_mesh

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_AUGMENT = flags.DEFINE_string("augment", "crop_flip", "data.augment of the +aug modes.")
_BLOCKS = flags.DEFINE_integer("blocks", 7, "Timed blocks per mode.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per block.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Warm-up steps per mode.")
_OUT = flags.DEFINE_string("out", "", "Append JSON lines here too.")
_JPEG_DIR = flags.DEFINE_string(
    "jpeg_dir", "", "Write synthetic Office-31 JPEG files here and train on them."
)
_JPEG_PER_CLASS = flags.DEFINE_integer("jpeg_per_class", 20, "Images per class and domain.")
_JPEG_SIZE = flags.DEFINE_integer("jpeg_size", 300, "Typical side of the written JPEGs.")
_STREAM = flags.DEFINE_bool("stream", False, "data.stream: decode every batch from the files.")
_THREADS = flags.DEFINE_integer("threads", 0, "Decoding threads per domain (0: CPU count).")
_WORKERS = flags.DEFINE_integer("workers", 0, "grain worker processes per domain (--stream).")
_HOST_BATCHES = flags.DEFINE_integer("host_batches", 200, "Batches timed for the host cost.")
JPEG_TASK = "office31/amazon->office31/webcam"


def write_jpeg_benchmark(root: str, per_class: int, size: int, *, seed: int = 0) -> str:
    """Writes random-texture JPEGs in the Office-31 layout (``amazon`` and ``webcam``, 31
    class folders each) and prepares them TF-free; returns the TFDS ``data_dir``.

    Sides are drawn from ``[0.75, 1.25] * size`` (photos come in many sizes), the texture
    is smooth noise (JPEG-compressible like a photo, unlike white noise). Skips domains
    already prepared in ``root/data``.
    """
    from PIL import Image

    from tljax.data.benchmarks import prepare_domain
    from tljax.data.benchmarks.builders.office import OFFICE31_CLASSES

    data_dir = os.path.join(os.path.abspath(root), "data")
    rng = np.random.default_rng(seed)
    for domain in ("amazon", "webcam"):
        done = os.path.join(root, f".{domain}_{per_class}_{size}.done")
        if os.path.exists(done):
            continue
        manual = os.path.join(root, "manual")
        for name in OFFICE31_CLASSES:
            folder = os.path.join(manual, domain, "images", name)
            os.makedirs(folder, exist_ok=True)
            for j in range(per_class):
                h, w = (rng.uniform(0.75, 1.25, 2) * size).astype(int)
                coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
                image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
                image.save(os.path.join(folder, f"{domain}_{j}.jpg"), quality=90)
        prepare_domain(f"office31/{domain}", data_dir=data_dir, manual_dir=manual)
        open(done, "w").close()
    return data_dir


def use_jpeg_task(config, data_dir: str) -> None:
    """Points ``config`` at the prepared JPEG pair (``--stream`` sets ``data.stream``)."""
    import ml_collections

    with config.unlocked():
        config.data.task = JPEG_TASK
        config.data.task_kwargs = ml_collections.ConfigDict({"data_dir": data_dir})
        config.data.stream = _STREAM.value


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
    if _JPEG_DIR.value:
        data_dir = write_jpeg_benchmark(_JPEG_DIR.value, _JPEG_PER_CLASS.value, _JPEG_SIZE.value)
        use_jpeg_task(config, data_dir)
    load_before = os.getloadavg()
    sharding = NamedSharding(data_mesh(), PartitionSpec("data"))
    plain = build(config)
    with config.unlocked():
        config.data.augment = _AUGMENT.value
    augmented = build(config)
    task, bs, seed = plain["task"], config.data.batch_size, config.seed
    if config.data.stream:
        stream = GrainPairStream(
            task, bs, seed=seed, num_threads=_THREADS.value or None, num_workers=_WORKERS.value
        )
    else:
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
    for _ in range(_HOST_BATCHES.value):
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
        "backbone": config.model.backbone,
        "image_size": config.data.image_size,
        "input_dtype": str(task.source.train.x.dtype),
        "stream": bool(config.data.stream),
        "threads": _THREADS.value or os.cpu_count(),
        "workers": _WORKERS.value,
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

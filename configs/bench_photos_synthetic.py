r"""The Office-31 DANN step on synthetic 224×224 images: the GPU speed benchmark's config.

    python -m experiments.bench --config=configs/bench_photos_synthetic.py:batch=256 \
        --config.model.dtype=bfloat16 --input=synthetic --torch

Everything of ``configs/dann_office31.py`` (ResNet-50 from scratch, 256-d bottleneck,
discriminator 1024-1024 with BatchNorm, SGD Nesterov, inverse-decay lr, GRL warm start)
except the data: a registered task ``synthetic_photos`` of random images (seeded,
``n`` per split and domain, 31 classes). It measures speed only — there is nothing to
learn from these images — and needs no downloaded data or weights, so it runs on any
machine with enough memory (``experiments/gpu_check.sh`` uses it).

Config arguments (``configs/bench_photos_synthetic.py:key=value,...``): ``batch`` (per
domain, default 32), ``size`` (image side, default 224), ``arch`` (``resnet50`` or
another ResNet), ``n`` (images per split and domain, default 64), ``method`` (``dann``
or ``source_only``).
"""

from __future__ import annotations

import numpy as np

from configs import benchmark_common
from configs.args import parse_args
from tljax.config import base_config
from tljax.data import tasks
from tljax.data.core import Domain, Split, Task

TASK = "synthetic_photos"
NUM_CLASSES = 31
_KEYS = {"batch": int, "size": int, "arch": str, "n": int, "method": str}


def synthetic_photos(name: str, *, data_seed: int, image_size: int, n: int = 64) -> Task:
    """Two domains of ``n`` random ``image_size``² RGB images per split (float32 in
    [0, 1], labels uniform over 31 classes); the target's images are shifted in
    brightness so the domains differ."""
    rng = np.random.default_rng(data_seed)

    def split(shift: float) -> Split:
        x = rng.random((n, image_size, image_size, 3), dtype=np.float32) * 0.8 + shift
        return Split(x, rng.integers(0, NUM_CLASSES, n).astype(np.int32))

    source = Domain("synthetic_source", split(0.0), split(0.0))
    target = Domain("synthetic_target", split(0.2), split(0.2))
    return Task(name, source, target, NUM_CLASSES)


def get_config(arg: str = ""):
    opts = parse_args(arg, _KEYS, tuple(_KEYS))
    if TASK not in tasks.registered_task_names():
        tasks.register_task(TASK, synthetic_photos, ("n",), takes_image_size=True)
    c = base_config()
    c.data.task = TASK
    c.data.task_kwargs.n = opts.get("n", 64)
    c.data.image_size = opts.get("size", benchmark_common.PHOTO_SIZE)
    c.data.batch_size = opts.get("batch", benchmark_common.PHOTO_BATCH)
    c.data.prefetch = 0
    c.model.backbone = opts.get("arch", "resnet50")
    c.model.backbone_kwargs.remat = "none"  # or "block": see tljax.models.resnet.ResNet
    benchmark_common._method(c, opts.get("method", "dann"), bottleneck=256)
    c.optim.lr = 0.01
    c.optim.freeze = ((r"^model/backbone/", 0.1), (r".*", 1.0))
    c.train.steps = 100
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    c.train.eval_batch_size = 64
    return c

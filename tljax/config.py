"""The configuration schema shared by every experiment.

``base_config()`` lists every field with its default; a config file starts from it and
overrides fields. :func:`validate` rejects unknown keys (with the closest valid key) and
bad values before anything runs.
"""

from __future__ import annotations

import difflib

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Every configurable field with its default value."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.task = "digits->digits_m"  # a name from tljax.data.tasks.task_names()
    c.data.data_seed = 0  # seed of the synthetic shift, fixed across training seeds
    c.data.image_size = 28
    c.data.batch_size = 64  # per domain
    c.data.labels_per_class = 0  # >0: keep only this many labelled source examples per class
    # >0: semi-supervised DA: this many labelled target examples per class are taken out of
    # the target train split and fed as batch["target_labeled"] (CE added to the task loss).
    c.data.target_labels_per_class = 0
    c.data.target_labeled_batch_size = 0  # 0: min(batch_size, number of labelled examples)
    c.data.source_val_fraction = 0.0  # held out of source train for model selection
    c.data.standardize = False  # per-channel standardisation with source-train statistics
    # Task options passed to tljax.data.tasks.get_task, e.g. a text task's tokenizer path.
    c.data.task_kwargs = ml_collections.ConfigDict()
    # On-device augmentation of the train batches (source and target, never eval):
    # "none", or stages of tljax.data.augment joined by "+": crop, flip, randaugment
    # ("crop_flip" = "crop+flip"); options in augment_kwargs, e.g. scale=(0.5, 1.0).
    c.data.augment = "none"
    c.data.augment_kwargs = ml_collections.ConfigDict()
    c.data.prefetch = 2  # batches put on the device ahead by a background thread; 0: none

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "lenet"
    c.model.backbone_kwargs = ml_collections.ConfigDict()
    c.model.bottleneck_dim = 0  # 0: no bottleneck
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16
    # Published weights loaded into the backbone before training (the head stays new):
    # "bert": a HF model directory (config.json + model.safetensors) or a .safetensors /
    # .bin file; "resnet*": a torchvision .pth / .safetensors file. See
    # tljax.models.pretrained. Applied before init_from; a resumed run restores its
    # checkpoint instead.
    c.model.pretrained = ""
    # Initialise from another run's last checkpoint: its workdir, and a regex of the
    # parameter paths to copy (the head is usually re-initialised for a new label set).
    c.model.init_from = ""
    c.model.init_include = r"^model/(backbone|bottleneck)/"

    c.method = ml_collections.ConfigDict()
    c.method.name = "source_only"
    c.method.weight = 1.0  # trade-off λ of the method loss
    c.method.hparams = ml_collections.ConfigDict()

    c.optim = ml_collections.ConfigDict()
    c.optim.optimizer = "sgd"
    c.optim.lr = 0.01
    c.optim.schedule = "inverse_decay"
    c.optim.gamma = 1e-3
    c.optim.power = 0.75
    c.optim.warmup_steps = 0
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.weight_decay = 1e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.grad_clip = 0.0  # 0: no clipping
    # Ordered (regex, rule) pairs over parameter paths; rule None = frozen, else lr x rule.
    c.optim.freeze = ((r"^.*$", 1.0),)

    c.train = ml_collections.ConfigDict()
    c.train.steps = 2000
    # >1: several steps in one compiled call (lax.scan). Keep 1 for conv nets on CPU:
    # XLA:CPU runs convolutions inside a loop ~20x slower (docs/benchmarks.md).
    c.train.steps_per_call = 1
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.max_to_keep = 2
    c.train.eval_batch_size = 500
    c.train.progress = True
    c.train.tensorboard = True
    return c


# Fields that may change when a run is resumed.
RESUMABLE_FIELDS = {
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.max_to_keep",
    "train.eval_batch_size",
    "train.progress",
    "train.tensorboard",
    "data.prefetch",
}

# Subtrees whose keys belong to a backbone or method and are checked by them.
_FREE_SUBTREES = {
    "data.task_kwargs",
    "data.augment_kwargs",
    "model.backbone_kwargs",
    "method.hparams",
}


def flatten(config, prefix: str = "") -> dict:
    """``{"data.task": ..., ...}`` for a (nested) ConfigDict or dict."""
    out = {}
    items = config.items() if hasattr(config, "items") else []
    for k, v in items:
        key = f"{prefix}{k}"
        if hasattr(v, "items") and key not in _FREE_SUBTREES:
            out.update(flatten(v, key + "."))
        elif hasattr(v, "to_dict"):
            out[key] = v.to_dict()
        else:
            out[key] = v
    return out


def validate(config) -> None:
    """Checks ``config`` against :func:`base_config`.

    Raises:
      ValueError: on an unknown key (with the closest valid one) or a bad value.
    """
    valid = flatten(base_config())
    given = flatten(config)
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown config key {key!r}.{hint}")
    t = config.train
    for name in ("steps", "log_every", "eval_every", "checkpoint_every", "steps_per_call"):
        if int(t[name]) < 1:
            raise ValueError(f"config.train.{name} must be >= 1, got {t[name]}.")
    for name in ("log_every", "eval_every", "checkpoint_every"):
        if t[name] % t.steps_per_call:
            raise ValueError(
                f"config.train.{name}={t[name]} must be a multiple of "
                f"train.steps_per_call={t.steps_per_call}."
            )
    if t.checkpoint_every % t.log_every:
        raise ValueError(
            f"config.train.checkpoint_every={t.checkpoint_every} must be a multiple of "
            f"train.log_every={t.log_every} so a resumed run logs the same windows."
        )
    if not 0.0 <= config.data.source_val_fraction < 1.0:
        raise ValueError(
            f"config.data.source_val_fraction must be in [0, 1), got "
            f"{config.data.source_val_fraction}."
        )
    for name in ("target_labels_per_class", "target_labeled_batch_size"):
        value = config.data[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"config.data.{name} must be an integer >= 0 (0 = off/default), got {value!r}."
            )
    if config.data.target_labeled_batch_size and not config.data.target_labels_per_class:
        raise ValueError(
            f"config.data.target_labeled_batch_size={config.data.target_labeled_batch_size} "
            "is set but config.data.target_labels_per_class=0 (no labelled target subset)."
        )
    if config.data.prefetch < 0:
        raise ValueError(f"config.data.prefetch must be >= 0, got {config.data.prefetch}.")
    if config.data.batch_size < 1:
        raise ValueError(f"config.data.batch_size must be >= 1, got {config.data.batch_size}.")
    if config.model.dtype not in ("float32", "bfloat16"):
        raise ValueError(
            f"config.model.dtype={config.model.dtype!r}; valid: ['bfloat16', 'float32']."
        )

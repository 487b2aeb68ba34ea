"""The configuration schema shared by every experiment.

``base_config()`` lists every field with its default; a config file starts from it and
overrides fields. :func:`validate` rejects unknown keys (with the closest valid key), bad
values, unknown methods, backbones or method hyperparameters, and :func:`check_files`
paths that do not exist, before anything runs or is written. Their errors are
:class:`tljax.errors.ConfigError` / :class:`tljax.errors.UserFileNotFoundError`, which the
command line reports as one line.

Defaults that depend on other fields are resolved by :func:`resolve` when a run starts
(``tljax.loop`` calls it; the result is what ``workdir/config.json`` records and the run
prints):

* ``optim.schedule = "auto"`` and ``optim.weight_decay = None`` take the chosen
  optimizer's defaults (:data:`OPTIMIZER_DEFAULTS`): SGD keeps the papers' inverse-decay
  lr and coupled L2 1e-3; Adam a constant lr and no weight decay; AdamW a constant lr and
  decoupled weight decay 1e-4 (optax's default). A value the config file or the command
  line sets is kept as given (Adam with an explicit ``weight_decay`` adds it to the
  gradient, coupled L2, as PyTorch's ``Adam``).
* ``method.hparams`` gets every hyperparameter of the method's factory that it does not
  set, at the factory's default, so the record names them all.
* ``data.source_val_fraction = None`` means 0 (no hold-out) from Python; the command line
  (``experiments.run``, ``experiments.sweep``) makes it 0.1 unless ``--noholdout``.

Changing ``method.name`` on the command line (:func:`switch_method`) drops the
hyperparameters the config file set that the new method does not take, with a one-line
warning naming them.
"""

from __future__ import annotations

import inspect
import os

import ml_collections
from ml_collections import config_dict

from tljax.errors import ConfigError, UserFileNotFoundError
from tljax.method_hparams import (  # noqa: F401  (part of this module's interface)
    _did_you_mean,
    check_method_hparam,
    hparams_with_defaults,
    method_hparam_defaults,
    set_method_hparam,
    switch_method,
)


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
    # Fraction of source train held out for model selection. None: 0 from Python; 0.1 from
    # the command line (experiments.run / experiments.sweep) unless --noholdout.
    c.data.source_val_fraction = config_dict.placeholder(float)
    c.data.standardize = False  # per-channel standardisation with source-train statistics
    # Task options passed to tljax.data.tasks.get_task, e.g. a text task's tokenizer path.
    c.data.task_kwargs = ml_collections.ConfigDict()
    # On-device augmentation of the train batches (source and target, never eval):
    # "none", or stages of tljax.data.augment joined by "+": crop, flip, randaugment
    # ("crop_flip" = "crop+flip"); options in augment_kwargs, e.g. scale=(0.5, 1.0).
    c.data.augment = "none"
    c.data.augment_kwargs = ml_collections.ConfigDict()
    c.data.prefetch = 2  # batches put on the device ahead by a background thread; 0: none
    # Photo benchmarks: keep the images on disk, decoded on grain threads (same batches).
    c.data.stream = False

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
    # "auto": the optimizer's default (OPTIMIZER_DEFAULTS): inverse_decay for sgd,
    # constant for adam/adamw. Else constant | cosine | inverse_decay.
    c.optim.schedule = "auto"
    c.optim.gamma = 1e-3
    c.optim.power = 0.75
    c.optim.warmup_steps = 0
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    # None: the optimizer's default (OPTIMIZER_DEFAULTS): 1e-3 coupled L2 for sgd, 0 for
    # adam, 1e-4 decoupled for adamw. A set value is kept (coupled for sgd/adam).
    c.optim.weight_decay = config_dict.placeholder(float)
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
    # True: a progress bar when stderr is a terminal, else one log line every log_every
    # steps (a redirected log stays small); False: neither.
    c.train.progress = True
    c.train.tensorboard = True
    # True: bit-reproducible on every backend (GPU: XLA's deterministic ops; CPU: a fixed
    # 1-thread XLA pool, PJRT_NPROC=1; highest matmul precision). Set before any JAX
    # computation in the process: tljax.xla_env.apply_deterministic.
    c.train.deterministic = False
    return c


# What ``optim.schedule = "auto"`` and ``optim.weight_decay = None`` become per optimizer.
# SGD: the papers' (TLlib's) inverse-decay lr and L2 added to the gradient. Adam/AdamW: a
# constant lr; AdamW's decay is decoupled (optax.adamw, its default 1e-4).
OPTIMIZER_DEFAULTS = {
    "sgd": {"schedule": "inverse_decay", "weight_decay": 1e-3},
    "adam": {"schedule": "constant", "weight_decay": 0.0},
    "adamw": {"schedule": "constant", "weight_decay": 1e-4},
}
SCHEDULES = ("auto", "constant", "cosine", "inverse_decay")
# data.source_val_fraction = None is 0 from Python; the command line passes this.
CLI_SOURCE_VAL_FRACTION = 0.1


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
    "data.stream",
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


def resolve(config):
    """Fills the defaults that depend on other fields, in place (idempotent): the
    optimizer's schedule and weight decay where ``"auto"``/``None``
    (:data:`OPTIMIZER_DEFAULTS`), every method hyperparameter at its default, and
    ``data.source_val_fraction=None`` as 0. Call after the overrides and before the run
    records or uses its config (``tljax.loop`` does).

    Returns:
      ``config``, resolved.
    """
    o = config.optim
    per = OPTIMIZER_DEFAULTS.get(o.optimizer)
    if per is not None:
        if o.schedule == "auto":
            o.schedule = per["schedule"]
        if o.weight_decay is None:
            o.weight_decay = per["weight_decay"]
    if config.data.source_val_fraction is None:
        config.data.source_val_fraction = 0.0
    hp = config.method.hparams
    filled = hparams_with_defaults(config.method.name, hp.to_dict())
    with hp.unlocked():
        for k, v in filled.items():
            if k not in hp:
                hp[k] = v
    return config


def format_config(config) -> str:
    """The flattened config, one ``key: value`` line each (what a run prints at start)."""
    flat = flatten(config)
    width = max(len(k) for k in flat)
    return "\n".join(f"  {k:<{width}}  {flat[k]!r}" for k in sorted(flat))


def _check_positive_ints(config, names: dict[str, int]) -> None:
    """``names``: ``{"train.steps": minimum}``; each must be an int (not a bool) >= minimum."""
    for name, minimum in names.items():
        section, key = name.split(".")
        value = config[section][key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"config.{name} must be an integer >= {minimum}, got {value!r}.")


def _check_backbone_kwargs(backbone: str, kwargs) -> None:
    """Every ``model.backbone_kwargs`` key must be a keyword argument of the backbone."""
    from tljax.models import get_backbone_factory

    params = inspect.signature(get_backbone_factory(backbone)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    valid = sorted(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in ("input_shape", "rngs")  # passed by build_classifier
    )
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"Backbone {backbone!r} takes no argument {key!r} "
                f"(config.model.backbone_kwargs.{key}).{_did_you_mean(key, valid)} "
                f"Valid: {valid}."
            )


def check_files(config) -> None:
    """Checks that the files and runs the config reads exist (``model.init_from``,
    ``model.pretrained``), creating nothing. Separate from :func:`validate`, which
    judges a config on its own (e.g. one whose ``init_from`` run is still to be trained);
    the command line runs both before it creates the workdir.

    Raises:
      UserFileNotFoundError: (a ``FileNotFoundError``) naming the missing path.
    """
    init_from = config.model.init_from
    if init_from:
        path = os.path.abspath(os.path.expanduser(init_from))
        if not os.path.isdir(path):
            raise UserFileNotFoundError(
                f"No checkpoint to initialise from: config.model.init_from={init_from!r} does "
                "not exist; expected the workdir of a tljax run (it holds checkpoints/)."
            )
        if not os.path.isdir(os.path.join(path, "checkpoints")):
            raise UserFileNotFoundError(
                f"No checkpoint to initialise from: config.model.init_from={init_from!r} has "
                "no checkpoints/; expected the workdir of a tljax run that saved one. Train "
                "that run first."
            )
    pretrained = config.model.pretrained
    if pretrained and not os.path.exists(os.path.expanduser(pretrained)):
        raise UserFileNotFoundError(
            f"config.model.pretrained={pretrained!r} does not exist; expected a weights file "
            "(.safetensors, .pth) or a Hugging Face model directory."
        )


def validate(config) -> None:
    """Checks ``config`` against :func:`base_config` and the method and backbone
    registries (not the file system: see :func:`check_files`).

    Raises:
      ConfigError: (a ``ValueError``) on an unknown key (with the closest valid one), a
        bad value, an unknown method, backbone or method hyperparameter (with the valid
        names).
    """
    valid = flatten(base_config())
    given = flatten(config)
    for key in given:
        if key not in valid:
            raise ConfigError(f"Unknown config key {key!r}.{_did_you_mean(key, valid)}")
    _check_positive_ints(
        config,
        {
            "train.steps": 1,
            "train.steps_per_call": 1,
            "train.log_every": 1,
            "train.eval_every": 1,
            "train.checkpoint_every": 1,
            "train.max_to_keep": 1,
            "train.eval_batch_size": 1,
            "data.batch_size": 1,
            "data.image_size": 1,
            "data.labels_per_class": 0,
            "data.prefetch": 0,
            "data.target_labels_per_class": 0,
            "data.target_labeled_batch_size": 0,
            "model.bottleneck_dim": 0,
            "optim.warmup_steps": 0,
        },
    )
    t = config.train
    for name in ("steps", "log_every", "eval_every", "checkpoint_every"):
        if t[name] % t.steps_per_call:
            lo, k = t[name] - t[name] % t.steps_per_call, t.steps_per_call
            hint = f"; e.g. {lo or k} or {lo + k}" if name == "steps" else ""
            raise ConfigError(
                f"config.train.{name}={t[name]} must be a multiple of "
                f"train.steps_per_call={t.steps_per_call}{hint}."
            )
    if t.checkpoint_every % t.log_every:
        raise ConfigError(
            f"config.train.checkpoint_every={t.checkpoint_every} must be a multiple of "
            f"train.log_every={t.log_every} so a resumed run logs the same windows."
        )
    fraction = config.data.source_val_fraction
    if fraction is not None and not 0.0 <= fraction < 1.0:
        raise ConfigError(
            f"config.data.source_val_fraction must be in [0, 1) (or None: the default), got "
            f"{fraction}."
        )
    o = config.optim
    if o.optimizer not in OPTIMIZER_DEFAULTS:
        raise ConfigError(
            f"config.optim.optimizer={o.optimizer!r}."
            f"{_did_you_mean(o.optimizer, OPTIMIZER_DEFAULTS)} Valid: {sorted(OPTIMIZER_DEFAULTS)}."
        )
    if o.schedule not in SCHEDULES:
        raise ConfigError(
            f"config.optim.schedule={o.schedule!r}.{_did_you_mean(o.schedule, SCHEDULES)} "
            f"Valid: {list(SCHEDULES)} (auto: the optimizer's default)."
        )
    if o.weight_decay is not None and not o.weight_decay >= 0:
        raise ConfigError(
            f"config.optim.weight_decay must be >= 0 (or None: the optimizer's default), got "
            f"{o.weight_decay}."
        )
    if config.data.target_labeled_batch_size and not config.data.target_labels_per_class:
        raise ConfigError(
            f"config.data.target_labeled_batch_size={config.data.target_labeled_batch_size} "
            "is set but config.data.target_labels_per_class=0 (no labelled target subset)."
        )
    if config.model.dtype not in ("float32", "bfloat16"):
        raise ConfigError(
            f"config.model.dtype={config.model.dtype!r}; valid: ['bfloat16', 'float32']."
        )
    from tljax.models import backbone_names

    if config.model.backbone not in backbone_names():
        raise ConfigError(
            f"config.model.backbone={config.model.backbone!r} is not a backbone."
            f"{_did_you_mean(config.model.backbone, backbone_names())} "
            f"Valid: {backbone_names()}."
        )
    _check_backbone_kwargs(config.model.backbone, config.model.backbone_kwargs)
    for key in config.method.hparams:
        check_method_hparam(config.method.name, key, source=f"config.method.hparams.{key}")
    from tljax import methods

    try:  # builds no arrays: the method's own checks of its hyperparameter values
        methods.get(config.method.name, **config.method.hparams.to_dict())
    except ValueError as e:
        raise ConfigError(str(e)) from e

r"""Shared settings of the inductive-transfer experiments (not a runnable config).

Pretraining on Fashion-MNIST (task ``fashion``: 60,000 train / 10,000 test, 28×28×1),
supervised (``source_only``) or self-supervised (``simclr``), then transfer to the UCI
digits (task ``digits``: 1,257 train / 540 test at 28×28×1) with
``data.labels_per_class`` labelled examples per class (0: all). The network is the
digits LeNet of the DANN paper (conv 5×5×32 → pool → conv 5×5×48 → pool → 768-d
features → linear head), inputs in ``[0, 1]`` (no standardisation). Every transfer run
has the same budget: ``STEPS`` SGD steps (lr 0.01, momentum 0.9, inverse decay) with
32 images per step (fewer when there are fewer labelled images).

The transfer configs take an argument ``key=value,...`` with keys ``labels`` (per
class, 0 = all), ``pretrain`` (workdir of the pretraining run, or ``none``),
``bottleneck`` (width of a ``Linear→BN→ReLU`` bottleneck, 0 = none; must match the
pretraining run) and ``steps``, e.g.
``configs/transfer/finetune.py:labels=5,pretrain=runs/transfer/pretrain_simclr``.
Strategies are set by the freezing rules (``optim.freeze``); see docs/transfer.md.
"""

from __future__ import annotations

from configs.args import parse_args
from tljax.config import base_config

PRETRAIN_STEPS = 1000
STEPS = 300
DEFAULT_PRETRAIN = "runs/transfer/pretrain_supervised"
_KEYS = {"labels": int, "pretrain": str, "bottleneck": int, "steps": int}

# strategy -> (method, hparams, freezing rules as a function of the step budget, weight).
BACKBONE = r"^model/(backbone|bottleneck)/"


def _rules(strategy: str, steps: int) -> tuple:
    if strategy in ("scratch", "finetune", "l2sp", "delta", "bss", "lwf", "bn_frozen", "bn_adapt"):
        return ((r".*", 1.0),)
    if strategy == "linear_probe":  # feature extraction: only the new head trains
        return ((BACKBONE, None), (r".*", 1.0))
    if strategy == "partial_freeze":  # the first conv block stays as pretrained
        return ((r"^model/backbone/conv1/", None), (r".*", 1.0))
    if strategy == "discriminative_lr":  # the usual 0.1x lr on the pretrained backbone
        return ((BACKBONE, 0.1), (r".*", 1.0))
    if strategy == "gradual_unfreeze":  # head first, then top to bottom (ULMFiT)
        third = steps // 3
        return (
            (r"^model/head/", 1.0),
            (r"^model/(bottleneck|backbone/conv2)/", (1.0, third)),
            (r"^model/backbone/", (1.0, 2 * third)),
            (r"^method/", 1.0),
        )
    raise ValueError(f"Unknown transfer strategy {strategy!r}; valid: {sorted(STRATEGIES)}.")


STRATEGIES = {
    "scratch": ("source_only", {}, 1.0),
    "linear_probe": ("source_only", {}, 1.0),
    "finetune": ("source_only", {}, 1.0),
    "partial_freeze": ("source_only", {}, 1.0),
    "gradual_unfreeze": ("source_only", {}, 1.0),
    "discriminative_lr": ("source_only", {}, 1.0),
    "l2sp": ("l2sp", {"alpha": 0.1, "beta": 0.01}, 1.0),
    # TLlib's alpha=0.01 (ResNet-50) makes this LeNet run unstable: the batch-summed feature
    # distance grows to ~15,000 (loss 155 vs CE 0.4) and never shrinks; 1e-3 trains stably.
    "delta": ("delta", {"alpha": 0.001, "beta": 0.01}, 1.0),
    "bss": ("bss", {"k": 1}, 0.001),
    "lwf": ("lwf", {"temperature": 3.0}, 4.0),
    "bn_frozen": ("finetune", {"bn_stats": "frozen"}, 1.0),
    "bn_adapt": ("finetune", {"bn_stats": "adapt"}, 1.0),
}


def parse(arg: str) -> dict:
    """``"labels=5,pretrain=runs/x"`` → ``{"labels": 5, "pretrain": "runs/x"}``.

    Raises:
      ValueError: for an item without ``=`` or an unknown key.
    """
    return parse_args(arg, _KEYS)


def _network(c, bottleneck: int) -> None:
    c.data.image_size = 28
    c.data.standardize = False
    c.model.backbone = "lenet"
    c.model.backbone_kwargs.padding = "VALID"
    c.model.bottleneck_dim = bottleneck


def pretrain(method: str, arg: str = ""):
    """Pretraining on Fashion-MNIST: ``"source_only"`` (supervised) or ``"simclr"``."""
    opts = parse(arg)
    c = base_config()
    c.data.task = "fashion"
    c.data.batch_size = 64
    _network(c, opts.get("bottleneck", 0))
    c.method.name = method
    c.optim.lr = 0.01
    c.optim.weight_decay = 5e-4
    if method == "simclr":  # Adam is the robust choice for a short contrastive run
        c.optim.optimizer = "adam"
        c.optim.lr = 1e-3
        c.optim.schedule = "cosine"
        c.optim.weight_decay = 0.0
    steps = opts.get("steps", PRETRAIN_STEPS)
    c.train.steps = steps
    c.train.log_every = 50 if steps % 50 == 0 else steps
    c.train.eval_every = steps
    c.train.checkpoint_every = steps
    c.train.eval_batch_size = 1000
    return c


def transfer(strategy: str, arg: str = ""):
    """A transfer run on the UCI digits with the given strategy (a key of STRATEGIES)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown transfer strategy {strategy!r}; valid: {sorted(STRATEGIES)}.")
    opts = parse(arg)
    method, hparams, weight = STRATEGIES[strategy]
    labels, steps = opts.get("labels", 0), opts.get("steps", STEPS)
    bottleneck = opts.get("bottleneck", 256 if strategy.startswith("bn_") else 0)
    pretrained = "" if strategy == "scratch" else opts.get("pretrain", DEFAULT_PRETRAIN)
    pretrained = "" if pretrained == "none" else pretrained
    c = base_config()
    c.data.task = "digits"
    c.data.labels_per_class = labels
    c.data.batch_size = min(32, 10 * labels) if labels else 32
    _network(c, bottleneck)
    c.model.init_from = pretrained
    c.model.init_include = r"^model/(backbone|bottleneck)/"
    c.method.name = method
    c.method.weight = weight
    for k, v in hparams.items():
        c.method.hparams[k] = v
    if method == "lwf":
        c.method.hparams.old_head_from = pretrained
    c.optim.lr = 0.01
    c.optim.weight_decay = 0.0 if method in ("l2sp", "delta") else 5e-4
    c.optim.freeze = _rules(strategy, steps)
    c.train.steps = steps
    c.train.log_every = 50 if steps % 50 == 0 else steps
    c.train.eval_every = max(steps // 3, 1)  # the table also reports the accuracy at 1/3
    c.train.checkpoint_every = steps
    return c

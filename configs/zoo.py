r"""The model zoo of ``experiments/zoo.py``: candidates and their fine-tuning runs.

A candidate is an architecture pretrained one way, all at one image size (``image_size``,
default 28×28; grey, inputs in ``[0, 1]``):

* architectures (``ARCHS``): ``lenet`` (the digits LeNet of docs/transfer.md, 768-d
  features), ``mlp`` (two ``Linear→ReLU`` layers, 256 and 128 wide), ``vit_tiny`` (ViT,
  patch 4 — a 7×7 grid at 28 px —, width 32, 2 layers, class-token features),
  ``vgg11_bn`` (VGG-11 with BatchNorm, 512-d global-pool features; 32 px and up),
  ``inception_v3`` (2048-d features, no auxiliary head; 75 px and up), and
  ``vgg11_bn_slim`` / ``inception_v3_slim``, the same two with an eighth of the channels
  in every convolution (``width=0.125``: 64-d and 256-d features), which a CPU trains;
* pretraining (``PRETRAININGS``): ``fashion`` (supervised on Fashion-MNIST),
  ``digits`` (supervised on the UCI digits), ``simclr`` (SimCLR on Fashion-MNIST, no
  labels reach the backbone), ``scratch`` (none: the seeded initialisation).

A fine-tuning run trains a candidate on a target task (a single-domain task such as
``digits_rot`` or ``fashion_inv``) with a new head, one learning rate of a small grid and
one strategy (``STRATEGIES``): ``finetune`` (everything trains), ``linear_probe`` (the
backbone is frozen: feature extraction; BatchNorm statistics too) or
``gradual_unfreeze`` (the head, then the top block — ``TOP_BLOCK`` — after a third of
the steps, then everything after two thirds).
``experiments.zoo`` picks the rate by the held-out 10% of the target's training split
(``source_val_acc``) and reports the test accuracy.

Runnable for one run, e.g.::

    python -m experiments.run --config=configs/zoo.py:role=pretrain,arch=vit_tiny,pretrain=simclr \
        --workdir=runs/zoo/pretrain/vit_tiny_simclr
    python -m experiments.run --workdir=runs/zoo/finetune/digits_rot/lenet_fashion/lr_1 \
        --config=configs/zoo.py:role=finetune,arch=lenet,target=digits_rot,init=runs/zoo/pretrain/lenet_fashion

Argument keys: ``role`` (``pretrain`` or ``finetune``), ``arch``, ``pretrain``,
``steps``, and for fine-tuning ``target``, ``init`` (the pretraining run's workdir;
``none`` for ``scratch``), ``lr_scale`` (times the architecture's base rate) and
``max_train`` (a seeded subsample of the target's training split; Fashion targets only),
``strategy``; and ``image_size`` for both.
"""

from __future__ import annotations

from configs.args import parse_args
from tljax.config import base_config

# name -> (backbone, backbone kwargs, optimizer, base learning rate)
ARCHS = {
    "lenet": ("lenet", {"padding": "VALID"}, "sgd", 0.01),
    "mlp": ("mlp", {"hidden": (256, 128)}, "sgd", 0.01),
    "vit_tiny": ("vit_tiny", {}, "adam", 1e-3),
    # 32×32 and up; the global pool instead of the 7×7 FC stack (docs/transfer.md)
    "vgg11_bn": ("vgg11_bn", {"fc_stack": False}, "sgd", 0.01),
    # 75×75 and up (no auxiliary head: it needs 299×299)
    "inception_v3": ("inception_v3", {}, "sgd", 0.01),
    # the same networks with an eighth of the channels in every convolution: CPU-sized
    "vgg11_bn_slim": ("vgg11_bn", {"fc_stack": False, "width": 0.125}, "sgd", 0.01),
    "inception_v3_slim": ("inception_v3", {"width": 0.125}, "sgd", 0.01),
}
# the smallest image side each takes
MIN_SIZE = {"vgg11_bn": 32, "inception_v3": 75, "vgg11_bn_slim": 32, "inception_v3_slim": 75}
BATCHNORM = tuple(MIN_SIZE)  # a linear probe freezes their BatchNorm statistics too
# Parameters of the top block of each architecture, unfrozen second by gradual_unfreeze.
TOP_BLOCK = {
    "lenet": r"^model/backbone/conv2/",
    "mlp": r"^model/backbone/layers/1/",
    "vit_tiny": r"^model/backbone/(layers/1|layernorm)/",
    "vgg11_bn": r"^model/backbone/features/(2[2-8])/",  # stage 5
    "inception_v3": r"^model/backbone/Mixed_7",  # Mixed_7a-c
    "vgg11_bn_slim": r"^model/backbone/features/(2[2-8])/",
    "inception_v3_slim": r"^model/backbone/Mixed_7",
}
# Fine-tuning strategies (docs/transfer.md): feature extraction, full fine-tuning, and
# gradual unfreezing (head, then the top block after a third of the steps, then all).
STRATEGIES = ("finetune", "linear_probe", "gradual_unfreeze")


def freeze_rules(strategy: str, arch: str, steps: int) -> tuple:
    """``optim.freeze`` of a fine-tuning strategy for ``arch``."""
    _check("strategy", strategy, STRATEGIES)
    if strategy == "finetune":
        return ((r".*", 1.0),)
    if strategy == "linear_probe":
        return ((r"^model/(backbone|bottleneck)/", None), (r".*", 1.0))
    third = steps // 3
    return (
        (r"^model/head/", 1.0),
        (TOP_BLOCK[arch], (1.0, third)),
        (r"^model/(backbone|bottleneck)/", (1.0, 2 * third)),
        (r".*", 1.0),
    )


# name -> (task, method); scratch has no pretraining run.
PRETRAININGS = {
    "fashion": ("fashion", "source_only"),
    "digits": ("digits", "source_only"),
    "simclr": ("fashion", "simclr"),
    "scratch": None,
}
TARGETS = ("digits_rot", "fashion_inv", "digits_inv", "fashion_rot", "digits", "fashion")
PRETRAIN_STEPS = 1000
FINETUNE_STEPS = 300
_KEYS = {
    "role": str,
    "arch": str,
    "pretrain": str,
    "steps": int,
    "target": str,
    "init": str,
    "lr_scale": float,
    "max_train": int,
    "strategy": str,
    "image_size": int,
}


def _check(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"configs/zoo.py: unknown {name} {value!r}; valid: {sorted(valid)}.")


def _network(c, arch: str, scale: float = 1.0, image_size: int = 28) -> None:
    backbone, kwargs, optimizer, lr = ARCHS[arch]
    c.data.image_size = image_size
    c.data.standardize = False
    c.model.backbone = backbone
    for k, v in kwargs.items():
        c.model.backbone_kwargs[k] = v
    c.optim.optimizer = optimizer
    c.optim.lr = lr * scale
    c.optim.weight_decay = 5e-4 if optimizer == "sgd" else 0.0


def _schedule(c, steps: int) -> None:
    c.train.steps = steps
    c.train.log_every = 50 if steps % 50 == 0 else steps
    c.train.eval_every = steps
    c.train.checkpoint_every = steps


def pretrain(arch: str, pretraining: str, steps: int = PRETRAIN_STEPS, image_size: int = 28):
    """The pretraining run of candidate ``arch``/``pretraining`` (not ``scratch``)."""
    _check("architecture", arch, ARCHS)
    _check("pretraining", pretraining, [k for k, v in PRETRAININGS.items() if v])
    task, method = PRETRAININGS[pretraining]
    c = base_config()
    c.data.task = task
    c.data.batch_size = 64
    _network(c, arch, image_size=image_size)
    c.method.name = method
    if method == "simclr":  # Adam with cosine decay, as configs/transfer/pretrain_simclr.py
        c.optim.optimizer = "adam"
        c.optim.lr = 1e-3
        c.optim.schedule = "cosine"
        c.optim.weight_decay = 0.0
    _schedule(c, steps)
    c.train.eval_batch_size = 1000
    return c


def finetune(
    arch: str,
    target: str,
    init: str,
    *,
    lr_scale: float = 1.0,
    steps: int = FINETUNE_STEPS,
    max_train: int = 0,
    strategy: str = "finetune",
    image_size: int = 28,
):
    """Fine-tuning of a candidate on ``target`` with a new head; what else trains is
    the ``strategy``'s (:func:`freeze_rules`)."""
    _check("architecture", arch, ARCHS)
    _check("target", target, TARGETS)
    rules = freeze_rules(strategy, arch, steps)
    c = base_config()
    c.data.task = target
    if max_train:
        if not target.startswith("fashion"):
            raise ValueError(
                f"configs/zoo.py: max_train applies to Fashion targets, not {target!r}."
            )
        c.data.task_kwargs.max_train = max_train
    c.data.batch_size = 32
    _network(c, arch, lr_scale, image_size)
    c.model.init_from = "" if init in ("", "none") else init
    c.model.init_include = r"^model/(backbone|bottleneck)/"
    c.method.name = "source_only"
    if strategy == "linear_probe" and arch in BATCHNORM:  # frozen BatchNorm statistics too
        c.method.name = "finetune"
        c.method.hparams.bn_stats = "frozen"
    c.optim.freeze = rules
    _schedule(c, steps)
    c.train.eval_batch_size = 1000
    return c


def get_config(arg: str = ""):
    opts = parse_args(arg, _KEYS)
    role, arch = opts.get("role", "pretrain"), opts.get("arch", "lenet")
    if role == "pretrain":
        return pretrain(
            arch,
            opts.get("pretrain", "fashion"),
            opts.get("steps", PRETRAIN_STEPS),
            opts.get("image_size", 28),
        )
    if role == "finetune":
        return finetune(
            arch,
            opts.get("target", "digits_rot"),
            opts.get("init", "none"),
            lr_scale=opts.get("lr_scale", 1.0),
            steps=opts.get("steps", FINETUNE_STEPS),
            max_train=opts.get("max_train", 0),
            strategy=opts.get("strategy", "finetune"),
            image_size=opts.get("image_size", 28),
        )
    raise ValueError(f"configs/zoo.py: role must be 'pretrain' or 'finetune', got {role!r}.")

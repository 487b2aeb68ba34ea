r"""Shared settings of the standard-benchmark configs (not a runnable config).

The protocol of TLlib (thuml/Transfer-Learning-Library, ``examples/domain_adaptation/
image_classification/{dann,erm}.py`` and ``dann.sh``/``erm.sh``), as summarised in the
project's REFERENCE.md:

* SGD, momentum 0.9, Nesterov; ``lr = base · (1 + γ i)^-0.75`` stepped every iteration;
  DANN: weight decay 1e-3, γ = 1e-3; ERM (source only): weight decay 5e-4, γ = 3e-4.
* DANN: bottleneck ``Linear → BN → ReLU`` (256 wide; 1024 on DomainNet), discriminator
  ``256 → 1024 → 1024 → 1`` with BatchNorm, GRL warm start α=1, lo=0, hi=1, N=1000.
  Source only (TLlib's ``erm.py``): no bottleneck, a linear head on the backbone.
* Digits (from scratch, backbone lr ×1): batch 128 per domain, 20 "epochs" of 2,500
  iterations = 50k steps. SVHN → MNIST: DTN at 32×32×3 (MNIST repeated to RGB), base lr
  0.03 (DANN) / 0.1 (ERM); MNIST → USPS: TLlib's LeNet (conv 20, conv 50, FC 500, dropout
  0.5) at 28×28×1, lr 0.01 / 0.01; USPS → MNIST: the same, lr 0.1 / 0.1.
* Photos (ImageNet-pretrained ResNet, backbone lr ×0.1 through ``optim.freeze``): batch 32
  per domain, 224×224, random resized crop + horizontal flip (VisDA: flip only, TLlib's
  ``cen.crop``), epochs of 1,000 iterations: Office-31 20 (ResNet-50), Office-Home 30
  (ResNet-50), VisDA-2017 30 (ResNet-101, class-mean accuracy), DomainNet 30 epochs of
  2,500 (ResNet-101, bottleneck 1024).

Where tljax differs: inputs are standardised per channel with source-train statistics
(``data.standardize``) instead of TLlib's fixed ``Normalize`` (0.5/0.5 for digits,
ImageNet's mean/std for photos); photos are resized straight to 224×224 (TLlib resizes
to 256 and crops 224 for training and evaluation). TLlib reports the best epoch on the
target test set; tljax logs every epoch and reports the last step in ``results.json``,
with the other selection rules under ``by_selection_rule``.

Config arguments (``configs/x.py:key=value,...``): ``source``, ``target`` (domain names,
e.g. ``amazon``, ``real_world``, ``svhn``), ``steps``, ``data_dir`` (TFDS data directory;
default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``), ``max_examples`` (per split of
each domain; photo domains are held in memory as float32, 0.6 MB per image) and, for the
photo benchmarks, ``weights``: the torchvision ImageNet weights file of the backbone
(default: ``$TLJAX_RESNET50_WEIGHTS`` / ``$TLJAX_RESNET101_WEIGHTS``; ``none`` trains
from scratch with backbone lr ×1; reading a ``.pth`` needs torch, a ``.safetensors``
conversion of it does not). Data not prepared: the run stops with the loader's
``DatasetNotFoundError``, which says what to download and the command that prepares it
(``python -m tljax.data.benchmarks prepare NAME --manual_dir DIR``).
"""

from __future__ import annotations

import math
import os

from configs.args import parse_args
from tljax.config import base_config

# "A->B" -> (backbone, backbone_kwargs, image_size, {method: base lr}); TLlib's dann.sh/erm.sh.
TLLIB_LENET = {"channels": (20, 50), "padding": "VALID", "fc_dim": 500, "dropout": 0.5}
DIGITS = {
    "svhn->mnist": ("dtn", {}, 32, {"dann": 0.03, "source_only": 0.1}),
    "mnist->usps": ("lenet", TLLIB_LENET, 28, {"dann": 0.01, "source_only": 0.01}),
    "usps->mnist": ("lenet", TLLIB_LENET, 28, {"dann": 0.1, "source_only": 0.1}),
}
DIGITS_BATCH = 128
DIGITS_ITERS_PER_EPOCH = 2500
DIGITS_EPOCHS = 20

# benchmark -> its domains, default pair, backbone, epochs, iterations per epoch,
# DANN bottleneck width, train augmentation.
PHOTOS = {
    "office31": dict(
        domains=("amazon", "dslr", "webcam"), default=("amazon", "webcam"),
        backbone="resnet50", epochs=20, iters=1000, bottleneck=256, augment="crop+flip",
    ),
    "office_home": dict(
        domains=("art", "clipart", "product", "real_world"), default=("art", "clipart"),
        backbone="resnet50", epochs=30, iters=1000, bottleneck=256, augment="crop+flip",
    ),
    "visda2017": dict(
        domains=("synthetic", "real"), default=("synthetic", "real"),
        backbone="resnet101", epochs=30, iters=1000, bottleneck=256, augment="flip",
    ),
    "domainnet": dict(
        domains=("clipart", "infograph", "painting", "quickdraw", "real", "sketch"),
        default=("real", "sketch"),
        backbone="resnet101", epochs=30, iters=2500, bottleneck=1024, augment="crop+flip",
    ),
}  # fmt: skip
PHOTO_BATCH = 32
PHOTO_SIZE = 224

WEIGHTS_ENV = {"resnet50": "TLJAX_RESNET50_WEIGHTS", "resnet101": "TLJAX_RESNET101_WEIGHTS"}
# torchvision's ImageNet (V1) weights, the ones TLlib fine-tunes.
WEIGHTS_URL = {
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}

_KEYS = {
    "source": str,
    "target": str,
    "steps": int,
    "data_dir": str,
    "max_examples": int,
    "weights": str,
}


def parse(arg: str, allowed=tuple(_KEYS)) -> dict:
    """``"source=amazon,target=webcam"`` → ``{"source": "amazon", "target": "webcam"}``.

    Raises:
      ValueError: for an item without ``=`` or a key not in ``allowed``.
    """
    return parse_args(arg, _KEYS, allowed)


def _method(c, method: str, *, bottleneck: int) -> None:
    """DANN or source only with TLlib's optimiser settings for the method."""
    if method not in ("dann", "source_only"):
        raise ValueError(f"Benchmark configs exist for 'dann' and 'source_only', got {method!r}.")
    c.method.name = method
    c.optim.optimizer = "sgd"
    c.optim.schedule = "inverse_decay"
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.power = 0.75
    if method == "dann":
        c.model.bottleneck_dim = bottleneck
        c.method.weight = 1.0  # TLlib's --trade-off
        c.method.hparams.hidden = (1024, 1024)
        c.method.hparams.batch_norm = True
        c.method.hparams.grl_alpha = 1.0
        c.method.hparams.grl_max_iters = 1000.0
        c.optim.weight_decay = 1e-3
        c.optim.gamma = 1e-3
    else:  # erm.py: Classifier without bottleneck
        c.model.bottleneck_dim = 0
        c.optim.weight_decay = 5e-4
        c.optim.gamma = 3e-4


def _schedule(c, steps: int, epoch: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    c.train.steps = steps
    c.train.eval_every = min(epoch, steps)  # TLlib evaluates once per epoch
    c.train.checkpoint_every = c.train.eval_every
    c.train.log_every = math.gcd(100, c.train.eval_every)


def _data(c, opts: dict) -> None:
    if opts.get("data_dir"):
        c.data.task_kwargs.data_dir = opts["data_dir"]
    if opts.get("max_examples"):
        c.data.task_kwargs.max_examples = opts["max_examples"]


def digits(method: str, arg: str = ""):
    """SVHN → MNIST, MNIST → USPS or USPS → MNIST (``source=...,target=...``)."""
    opts = parse(arg, ("source", "target", "steps", "data_dir", "max_examples"))
    task = f"{opts.get('source', 'svhn')}->{opts.get('target', 'mnist')}"
    if task not in DIGITS:
        raise ValueError(
            f"No digits protocol for {task!r}; valid source/target pairs: "
            f"{[t.replace('->', ' -> ') for t in DIGITS]}."
        )
    backbone, kwargs, size, lrs = DIGITS[task]
    c = base_config()
    c.data.task = task
    c.data.image_size = size
    c.data.batch_size = DIGITS_BATCH
    c.data.standardize = True
    _data(c, opts)
    c.model.backbone = backbone
    for k, v in kwargs.items():
        c.model.backbone_kwargs[k] = v
    _method(c, method, bottleneck=256)
    c.optim.lr = lrs[method]
    c.optim.freeze = ((r".*", 1.0),)  # from scratch: every parameter at the base lr
    _schedule(c, opts.get("steps", DIGITS_EPOCHS * DIGITS_ITERS_PER_EPOCH), DIGITS_ITERS_PER_EPOCH)
    c.train.eval_batch_size = 1000
    return c


def pretrained_weights(backbone: str, value: str | None) -> str:
    """The weights file for ``model.pretrained``: ``value`` (``"none"``: from scratch,
    returns ``""``), else the backbone's environment variable.

    Raises:
      ValueError: if neither is given (saying where to get the file).
      FileNotFoundError: if the file does not exist.
    """
    env = WEIGHTS_ENV[backbone]
    path = value if value is not None else os.environ.get(env, "")
    if path == "none":
        return ""
    if not path:
        raise ValueError(
            f"This config fine-tunes an ImageNet-pretrained {backbone} and needs torchvision's "
            f"weights file: download {WEIGHTS_URL[backbone]} and pass it as the config "
            f"argument weights=PATH (e.g. configs/x.py:weights=/data/{backbone}.pth) or set "
            f"${env}=PATH. weights=none trains from scratch (not the published protocol)."
        )
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{backbone} weights file {path!r} (from {'weights=' if value else '$' + env}) "
            f"does not exist; download {WEIGHTS_URL[backbone]}."
        )
    return os.path.abspath(path)


def photos(method: str, benchmark: str, arg: str = ""):
    """A pair of one photo benchmark (``office31``, ``office_home``, ``visda2017``,
    ``domainnet``) with ``source=...,target=...`` domain names."""
    spec = PHOTOS[benchmark]
    opts = parse(arg)
    source, target = opts.get("source", spec["default"][0]), opts.get("target", spec["default"][1])
    for role, name in (("source", source), ("target", target)):
        if name not in spec["domains"]:
            raise ValueError(
                f"{role}={name!r} is not a {benchmark} domain; valid: {list(spec['domains'])}."
            )
    if source == target:
        raise ValueError(f"source and target are both {source!r}; pick two domains.")
    backbone = spec["backbone"]
    c = base_config()
    c.data.task = f"{benchmark}/{source}->{benchmark}/{target}"
    c.data.image_size = PHOTO_SIZE
    c.data.batch_size = PHOTO_BATCH
    c.data.standardize = True
    c.data.augment = spec["augment"]
    _data(c, opts)
    c.model.backbone = backbone
    c.model.pretrained = pretrained_weights(backbone, opts.get("weights"))
    _method(c, method, bottleneck=spec["bottleneck"])
    c.optim.lr = 0.01
    # Fine-tuning: the pretrained backbone at 0.1x, bottleneck/head/discriminator at 1x.
    backbone_lr = 0.1 if c.model.pretrained else 1.0
    c.optim.freeze = ((r"^model/backbone/", backbone_lr), (r".*", 1.0))
    _schedule(c, opts.get("steps", spec["epochs"] * spec["iters"]), spec["iters"])
    c.train.eval_batch_size = 256
    return c

r"""A PyTorch reference of the DANN train step, for speed comparisons with tljax.

Written from the papers and the protocol (Ganin et al., JMLR 2016; the widely
reproduced TLlib recipe in ``shared/REFERENCE.md``), not from tljax's or TLlib's code:

* one forward of the network over source and target images concatenated (BatchNorm sees
  both domains), cross-entropy on the source logits;
* a gradient reversal layer with the warm-start coefficient
  ``λ(i) = 2(hi−lo)/(1+exp(−α i/N)) − (hi−lo) + lo`` between the features and the domain
  discriminator; loss ``½(BCE_source + BCE_target)`` (source = 1, target = 0);
* SGD, momentum 0.9, Nesterov, L2 weight decay added to the gradient, the inverse-decay
  learning rate ``lr·mult·(1+γ i)^(−p)`` stepped every iteration (``LambdaLR``);
* the published scripts' three host syncs per step: ``loss.item()`` and the two accuracy
  meters (source classification, domain discriminator).

Networks, read from a tljax config by :func:`spec_from_config` so both sides build the
same model: the LeNet of ``tljax/models/lenet.py`` (conv 5×5 → ReLU → max-pool 2, twice;
widths and padding from ``config.model.backbone_kwargs``), and ResNet-50 (He et al., CVPR
2016; the "v1.5" block that strides in its 3×3 convolution), each followed by the optional
``Linear→BN→ReLU`` bottleneck, a linear classifier, and the discriminator MLP of
``config.method.hparams`` (hidden widths, BatchNorm or not). Learning-rate multipliers
(the usual 0.1× backbone) come from ``config.optim.freeze``.

Variants (:data:`VARIANTS`): ``eager`` (fp32 eager, what the published scripts run),
``compile`` (fp32, the loss module under ``torch.compile``), ``bf16_compile`` (bf16
autocast + channels_last + ``torch.compile``, the usual fast GPU recipe).

torch is an optional dependency (``pip install -e '.[bench-torch]'``); the tljax library
never imports it. Used by ``python -m experiments.bench --torch``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = {
    "eager": "fp32 eager",
    "compile": "fp32, torch.compile",
    "bf16_compile": "bf16 autocast + channels_last + torch.compile",
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """What to build: the model, the DANN hyperparameters and the optimizer."""

    backbone: str
    image_shape: tuple[int, int, int]  # (height, width, channels)
    num_classes: int
    channels: tuple[int, int] = (32, 48)
    padding: str = "VALID"
    bottleneck_dim: int = 0
    disc_hidden: tuple[int, ...] = (1024, 1024)
    disc_batch_norm: bool = True
    grl_lo: float = 0.0
    grl_hi: float = 1.0
    grl_alpha: float = 1.0
    grl_max_iters: float = 1000.0
    weight: float = 1.0
    lr: float = 0.01
    gamma: float = 1e-3
    power: float = 0.75
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-3
    # lr multipliers of backbone, bottleneck, head, discriminator (None = frozen)
    lr_mult: tuple = (1.0, 1.0, 1.0, 1.0)


SUPPORTED = {"backbone": ("lenet", "resnet50"), "method": ("dann",), "optimizer": ("sgd",)}

# A representative tljax parameter path of each group, to find its freezing rule.
_GROUP_PATHS = (
    "model/backbone/conv1/kernel",
    "model/bottleneck/linear/kernel",
    "model/head/kernel",
    "method/out/kernel",
)


def _first_rule(path: str, rules):
    for pattern, rule in rules:
        if re.search(pattern, path):
            return rule[0] if isinstance(rule, (tuple, list)) else rule
    raise ValueError(f"No freezing rule matches {path!r}; rules: {[r[0] for r in rules]}.")


def spec_from_config(config, *, image_shape, num_classes: int) -> Spec:
    """The PyTorch equivalent of a tljax config.

    Raises:
      ValueError: for a backbone, method, optimizer or schedule this reference lacks.
    """
    import copy

    from tljax import config as config_lib

    # The effective values ("auto" schedule, default weight decay), as the tljax run has.
    config = config_lib.resolve(copy.deepcopy(config))
    checks = {
        "backbone": config.model.backbone,
        "method": config.method.name,
        "optimizer": config.optim.optimizer,
    }
    for key, value in checks.items():
        if value not in SUPPORTED[key]:
            raise ValueError(
                f"The torch reference has no {key} {value!r}; supported: {SUPPORTED[key]}."
            )
    if config.optim.schedule != "inverse_decay":
        raise ValueError(
            f"The torch reference implements only the 'inverse_decay' lr schedule, got "
            f"{config.optim.schedule!r}."
        )
    kw = config.model.backbone_kwargs.to_dict()
    # (ResNet-50 kwargs such as pretrained weights do not change the step's cost.)
    extra = sorted(k for k in kw if k not in ("channels", "padding") and kw[k])
    if config.model.backbone == "lenet" and extra:
        raise ValueError(
            f"The torch reference's LeNet has no {extra} (backbone_kwargs={kw}); "
            "supported: channels, padding."
        )
    hp = config.method.hparams.to_dict()
    rules = [tuple(r) for r in config.optim.freeze]
    return Spec(
        backbone=config.model.backbone,
        image_shape=tuple(int(s) for s in image_shape),
        num_classes=int(num_classes),
        channels=tuple(kw.get("channels", (32, 48))),
        padding=kw.get("padding", "VALID"),
        bottleneck_dim=int(config.model.bottleneck_dim or 0),
        disc_hidden=tuple(hp.get("hidden", (1024, 1024))),
        disc_batch_norm=bool(hp.get("batch_norm", True)),
        grl_lo=float(hp.get("grl_lo", 0.0)),
        grl_hi=float(hp.get("grl_hi", 1.0)),
        grl_alpha=float(hp.get("grl_alpha", 1.0)),
        grl_max_iters=float(hp.get("grl_max_iters", 1000.0)),
        weight=float(config.method.weight),
        lr=float(config.optim.lr),
        gamma=float(config.optim.gamma),
        power=float(config.optim.power),
        momentum=float(config.optim.momentum),
        nesterov=bool(config.optim.nesterov),
        weight_decay=float(config.optim.weight_decay),
        lr_mult=tuple(_first_rule(p, rules) for p in _GROUP_PATHS),
    )


class LeNet(nn.Module):
    """conv 5×5 → ReLU → max-pool 2, twice; flattened features."""

    def __init__(self, image_shape, channels=(32, 48), padding="VALID"):
        super().__init__()
        h, w, c = image_shape
        pad = 0 if padding == "VALID" else 2
        self.conv1 = nn.Conv2d(c, channels[0], 5, padding=pad)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5, padding=pad)
        shrink = 4 if padding == "VALID" else 0
        for _ in range(2):
            h, w = (h - shrink) // 2, (w - shrink) // 2
        self.feature_dim = h * w * channels[1]

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return torch.flatten(x, 1)


class _Block(nn.Module):
    """ResNet bottleneck block 1×1 → 3×3 (stride) → 1×1 (×4), identity or projection."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet50(nn.Module):
    """ResNet-50 without its classifier: global-average-pooled 2048-d features."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks, cin = [], 64
        for width, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(n):
                blocks.append(_Block(cin, width, stride if i == 0 else 1))
                cin = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = cin

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)


class Discriminator(nn.Module):
    """MLP ``in → hidden… → 1`` (Linear [→ BN] → ReLU per hidden layer); one logit."""

    def __init__(self, in_dim: int, hidden, batch_norm: bool):
        super().__init__()
        layers, d = [], in_dim
        for h in hidden:
            layers += [nn.Linear(d, h)] + ([nn.BatchNorm1d(h)] if batch_norm else [])
            layers += [nn.ReLU(inplace=True)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).squeeze(1)


class _GradientReversal(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``-coeff``."""

    @staticmethod
    def forward(ctx, x, coeff):
        ctx.save_for_backward(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (coeff,) = ctx.saved_tensors
        return -coeff.to(grad.dtype) * grad, None


def grl_coefficient(i: int, spec: Spec) -> float:
    """The warm-start coefficient ``λ(i)`` (computed on the host, as in the scripts)."""
    span = spec.grl_hi - spec.grl_lo
    return (
        2.0 * span / (1.0 + math.exp(-spec.grl_alpha * i / spec.grl_max_iters)) - span + spec.grl_lo
    )


class DANNLoss(nn.Module):
    """Backbone → [bottleneck] → classifier, plus the discriminator behind the GRL.

    ``forward(xs, ys, xt, coeff)`` returns ``(loss, source_acc, domain_acc)`` (accuracies
    in %), one forward over ``cat(xs, xt)``.
    """

    def __init__(self, spec: Spec):
        super().__init__()
        h, w, c = spec.image_shape
        if spec.backbone == "lenet":
            self.backbone = LeNet(spec.image_shape, spec.channels, spec.padding)
        else:
            self.backbone = ResNet50(c)
        dim = self.backbone.feature_dim
        self.bottleneck = nn.Identity()
        if spec.bottleneck_dim:
            self.bottleneck = nn.Sequential(
                nn.Linear(dim, spec.bottleneck_dim),
                nn.BatchNorm1d(spec.bottleneck_dim),
                nn.ReLU(inplace=True),
            )
            dim = spec.bottleneck_dim
        self.head = nn.Linear(dim, spec.num_classes)
        self.discriminator = Discriminator(dim, spec.disc_hidden, spec.disc_batch_norm)
        self.weight = spec.weight

    def groups(self):
        """Parameter groups in the order of ``Spec.lr_mult``."""
        return (self.backbone, self.bottleneck, self.head, self.discriminator)

    def forward(self, xs, ys, xt, coeff):
        n = xs.shape[0]
        f = self.bottleneck(self.backbone(torch.cat([xs, xt], dim=0)))
        logits = self.head(f)[:n].float()
        cls_loss = F.cross_entropy(logits, ys)
        d = self.discriminator(_GradientReversal.apply(f, coeff)).float()
        labels = torch.cat([d.new_ones(n), d.new_zeros(d.shape[0] - n)])
        bce = F.binary_cross_entropy_with_logits(d, labels, reduction="none")
        transfer = 0.5 * (bce[:n].mean() + bce[n:].mean())
        loss = cls_loss + self.weight * transfer
        cls_acc = (logits.argmax(1) == ys).float().mean() * 100.0
        domain_acc = ((d > 0) == (labels > 0.5)).float().mean() * 100.0
        return loss, cls_acc, domain_acc


class AverageMeter:
    """Running average of a host float (as the published scripts keep them)."""

    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


class Trainer:
    """One DANN iteration at a time, as the published training loops do it.

    Args:
      spec: what to build (:func:`spec_from_config`).
      variant: one of :data:`VARIANTS`.
      device: a torch device (``"cpu"``, ``"cuda"``).
      seed: initialisation seed.
    """

    def __init__(self, spec: Spec, *, variant: str = "eager", device="cpu", seed: int = 0):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown torch variant {variant!r}; valid: {list(VARIANTS)}.")
        torch.manual_seed(seed)
        self.spec, self.variant, self.device = spec, variant, torch.device(device)
        self.channels_last = variant == "bf16_compile"
        self.autocast = variant == "bf16_compile"
        self.model = DANNLoss(spec).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        groups = []
        for module, mult in zip(self.model.groups(), spec.lr_mult):
            params = list(module.parameters())
            if not params:
                continue
            if mult is None:  # frozen
                for p in params:
                    p.requires_grad_(False)
                continue
            groups.append({"params": params, "lr": spec.lr * mult})
        self.optimizer = torch.optim.SGD(
            groups,
            lr=spec.lr,
            momentum=spec.momentum,
            nesterov=spec.nesterov,
            weight_decay=spec.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: (1.0 + spec.gamma * i) ** (-spec.power)
        )
        self.forward = torch.compile(self.model) if "compile" in variant else self.model
        self.meters = {k: AverageMeter() for k in ("loss", "cls_acc", "domain_acc")}
        self.iteration = 0

    def prepare(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """NHWC host images → NCHW tensor on the device (channels_last when asked); uint8
        photos (tljax keeps benchmark photos as uint8) become float32 in [0, 1] on the
        device, as tljax's step converts them."""
        x = torch.as_tensor(image).permute(0, 3, 1, 2)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().mul_(1.0 / 255.0)
        return x.contiguous(memory_format=fmt)

    def synthetic(self, batch_size: int, seed: int = 0):
        """A random ``(xs, ys, xt)`` batch already on the device."""
        g = torch.Generator().manual_seed(seed)
        h, w, c = self.spec.image_shape
        xs = torch.randn(batch_size, h, w, c, generator=g)
        xt = torch.randn(batch_size, h, w, c, generator=g)
        ys = torch.randint(0, self.spec.num_classes, (batch_size,), generator=g)
        return self.prepare(xs), ys.to(self.device), self.prepare(xt)

    def from_stream(self, batch) -> tuple:
        """A tljax stream batch (NumPy, NHWC) moved to the device, as a DataLoader's would."""
        ys = torch.as_tensor(batch["source"]["label"]).long().to(self.device)
        return self.prepare(batch["source"]["image"]), ys, self.prepare(batch["target"]["image"])

    def _autocast(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def step(self, xs, ys, xt) -> float:
        """One iteration; returns the loss (already synced to the host, as the scripts do)."""
        self.model.train()
        coeff = torch.tensor(grl_coefficient(self.iteration, self.spec), device=self.device)
        with self._autocast():
            loss, cls_acc, domain_acc = self.forward(xs, ys, xt, coeff)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        n = xs.shape[0]
        value = loss.item()  # the three host syncs of the published loops
        self.meters["loss"].update(value, n)
        self.meters["cls_acc"].update(cls_acc.item(), n)
        self.meters["domain_acc"].update(domain_acc.item(), n)
        return value

    def synchronize(self) -> None:
        """Waits for queued device work (a no-op on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def count_flops(self, xs, ys, xt) -> int:
        """Forward + backward FLOPs of one step (``torch.utils.flop_counter``: matmuls and
        convolutions only), counted on the eager module with no optimizer update."""
        from torch.utils.flop_counter import FlopCounterMode

        coeff = torch.tensor(0.5, device=self.device)
        counter = FlopCounterMode(display=False)
        with counter, self._autocast():
            loss, _, _ = self.model(xs, ys, xt, coeff)
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())


def peak_memory_bytes(device) -> tuple[int | None, str]:
    """Peak allocated device memory, or ``None`` and why."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    return None, f"torch has no allocator statistics for {device.type!r} devices"


def runners(config, parts, *, inputs, variants, steps: int, warmup: int, threads: int):
    """One :class:`experiments.bench.Runner` per (variant, input), for the bench."""
    from experiments.bench import Runner
    from tljax.data.stream import DomainPairStream

    torch.set_num_threads(threads)
    task, bs = parts["task"], int(config.data.batch_size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if any("compile" in v for v in variants) and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # a fresh inductor cache, so the first compile is cold
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="tljax_bench_inductor_")
    spec = spec_from_config(
        config, image_shape=task.source.train.x.shape[1:], num_classes=task.num_classes
    )
    out = []
    for variant in variants:
        for inp in inputs:
            trainer = Trainer(spec, variant=variant, device=device, seed=config.seed)
            fixed = trainer.synthetic(bs, seed=config.seed)
            flops = trainer.count_flops(*fixed)
            stream = DomainPairStream(task, bs, seed=config.seed)
            first = {}

            def run(n, trainer=trainer, fixed=fixed, stream=stream, inp=inp, first=first):
                for _ in range(n):
                    b = fixed if inp == "synthetic" else trainer.from_stream(next(stream))
                    tic = time.perf_counter()
                    trainer.step(*b)
                    first.setdefault("s", time.perf_counter() - tic)
                trainer.synchronize()

            info = {
                "framework": "torch",
                "variant": variant,
                "input": inp,
                "steps_per_call": 1,
                "dtype": "bfloat16" if variant.startswith("bf16") else "float32",
                "flops_per_step": flops,
                "flops_source": "torch.utils.flop_counter (matmuls and convolutions only)",
                "program_bytes": None,
                "first_step": first,
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "torch_device": device,
            }
            out.append(
                Runner(info, lambda run=run: run(max(warmup, 1)), lambda run=run: run(steps), steps)
            )
    return out

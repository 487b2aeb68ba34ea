r"""DANN on DomainNet with an ImageNet-pretrained ResNet-101 (TLlib protocol).

    export TLJAX_RESNET101_WEIGHTS=/data/resnet101-63fe2227.pth   # or :...,weights=PATH
    python -m experiments.run --config=configs/dann_domainnet.py:source=real,target=sketch \
        --workdir=runs/dann_domainnet_r2s

Domains: ``clipart``, ``infograph``, ``painting``, ``quickdraw``, ``real``, ``sketch``
(official train/test lists; data: ``python -m tljax.data.benchmarks prepare
domainnet/real --manual_dir DIR``). Memory: ``real`` alone has 120k training images
(~72 GB as 224×224 float32) — pass ``max_examples=N`` on smaller machines.

Protocol (TLlib ``dann.sh``: ``-a resnet101 --bottleneck-dim 1024 --epochs 30 -i 2500``;
``configs/benchmark_common.py``): 224×224, random resized crop + flip, 32 images per
domain, 75,000 steps (30 × 2,500), SGD ``0.01·(1+0.001 i)^-0.75`` (weight decay 1e-3),
backbone lr ×0.1, 1024-d bottleneck, discriminator 1024-1024 with BatchNorm; accuracy
on the target's official test split.

Published numbers: REFERENCE.md lists none for DomainNet (TLlib's README has a
DomainNet table; quote it with its source when reporting). Not measured here yet.
"""

from configs import benchmark_common


def get_config(arg: str = "source=real,target=sketch"):
    return benchmark_common.photos("dann", "domainnet", arg)

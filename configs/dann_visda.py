r"""DANN on VisDA-2017 (synthetic → real) with an ImageNet-pretrained ResNet-101 (TLlib
protocol).

    export TLJAX_RESNET101_WEIGHTS=/data/resnet101-63fe2227.pth   # or :weights=PATH
    python -m experiments.run --config=configs/dann_visda.py --workdir=runs/dann_visda

Data: ``python -m tljax.data.benchmarks prepare visda2017/real --manual_dir DIR``
(``train.tar`` and ``validation.tar``). Memory: the 152k synthetic and 55k real images
take ~125 GB as 224×224 float32 — pass ``max_examples=N`` (per split of each domain) on
smaller machines.

Protocol (TLlib ``dann.sh``: ``-a resnet101 --epochs 30 --per-class-eval --train-resizing
cen.crop``; ``configs/benchmark_common.py``): 224×224, horizontal flip only, 32 images
per domain, 30,000 steps, SGD ``0.01·(1+0.001 i)^-0.75`` (weight decay 1e-3), backbone
lr ×0.1, 256-d bottleneck, discriminator 1024-1024 with BatchNorm.

Published number to compare with: the class-mean accuracy on the real domain
(``target_test_mean_class_acc`` in the logs), TLlib 79.5 (source only 51.7). Not
measured here yet.
"""

from configs import benchmark_common


def get_config(arg: str = "source=synthetic,target=real"):
    return benchmark_common.photos("dann", "visda2017", arg)

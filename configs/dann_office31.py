r"""DANN on Office-31 with an ImageNet-pretrained ResNet-50 (TLlib protocol).

    export TLJAX_RESNET50_WEIGHTS=/data/resnet50-0676ba61.pth   # or :...,weights=PATH
    python -m experiments.run --config=configs/dann_office31.py:source=amazon,target=webcam \
        --workdir=runs/dann_office31_A2W

Domains: ``amazon``, ``dslr``, ``webcam`` (data: ``python -m tljax.data.benchmarks
prepare office31/amazon --manual_dir DIR`` with ``domain_adaptation_images.tar.gz``
unpacked or not in ``DIR``; the run's error says so when it is missing). The weights
are torchvision's ``https://download.pytorch.org/models/resnet50-0676ba61.pth``; no
weights given → a clear error (``weights=none`` trains from scratch, not the protocol).

Protocol (TLlib ``dann.sh``: ``-a resnet50 --epochs 20``; ``configs/benchmark_common.py``):
224×224, random resized crop + flip, 32 images per domain, 20,000 steps (20 epochs ×
1,000), SGD (momentum 0.9, Nesterov, weight decay 1e-3), ``0.01·(1+0.001 i)^-0.75``,
backbone lr ×0.1 (``optim.freeze``), 256-d bottleneck, discriminator 1024-1024 with
BatchNorm, GRL warm start (α=1, N=1000), evaluation every 1,000 steps.

Published target accuracy (%) to compare with (TLlib README, best epoch on the target
test set): A→W 91.4, D→W 97.9, W→D 100, A→D 83.6, D→A 73.3, W→A 70.4; average 86.1
(DANN paper average 82.2). Source only (TLlib ERM): A→W 75.8, average 79.5. Not measured
here yet (the dataset and weights are not on this machine).
"""

from configs import benchmark_common


def get_config(arg: str = "source=amazon,target=webcam"):
    return benchmark_common.photos("dann", "office31", arg)

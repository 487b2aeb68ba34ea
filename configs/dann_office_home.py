r"""DANN on Office-Home with an ImageNet-pretrained ResNet-50 (TLlib protocol).

    export TLJAX_RESNET50_WEIGHTS=/data/resnet50-0676ba61.pth   # or :...,weights=PATH
    python -m experiments.run --config=configs/dann_office_home.py:source=art,target=clipart \
        --workdir=runs/dann_office_home_Ar2Cl

Domains: ``art``, ``clipart``, ``product``, ``real_world`` (data: ``python -m
tljax.data.benchmarks prepare office_home/art --manual_dir DIR`` with
``OfficeHomeDataset_10072016.zip``; the run's error says so when it is missing). Images
are held in memory as float32 (Art + Clipart at 224×224: ~4 GB; ``max_examples=N`` caps
each domain).

Protocol (TLlib ``dann.sh``: ``-a resnet50 --epochs 30``; ``configs/benchmark_common.py``):
as ``configs/dann_office31.py`` but 30,000 steps (30 epochs × 1,000).

Published target accuracy (%) to compare with: the 12-task average, TLlib 65.2 (best
epoch on the target test set), DANN paper 57.6 (REFERENCE.md lists no per-task numbers).
Not measured here yet.
"""

from configs import benchmark_common


def get_config(arg: str = "source=art,target=clipart"):
    return benchmark_common.photos("dann", "office_home", arg)

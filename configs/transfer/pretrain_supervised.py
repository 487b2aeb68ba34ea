r"""Supervised pretraining on Fashion-MNIST (task ``fashion``), the digits LeNet at 28×28×1.

    python -m experiments.run --config=configs/transfer/pretrain_supervised.py \
        --workdir=runs/transfer/pretrain_supervised

1,000 steps of 64 images (about one epoch). Argument keys: bottleneck, steps (see
configs/transfer/common.py). Expected Fashion test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.pretrain("source_only", arg)

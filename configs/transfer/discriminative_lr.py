r"""Discriminative learning rates: the pretrained backbone trains at 0.1x the head's lr.

    python -m experiments.run --config=configs/transfer/discriminative_lr.py:labels=10 \
        --workdir=runs/transfer/discriminative_lr_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("discriminative_lr", arg)

r"""Partial freezing by layer: the first conv block stays as pretrained, the rest trains.

    python -m experiments.run --config=configs/transfer/partial_freeze.py:labels=10 \
        --workdir=runs/transfer/partial_freeze_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("partial_freeze", arg)

r"""Fine-tuning with BatchNorm statistics adapted to the digits (the usual training
mode); the counterpart of `bn_frozen.py` (default `bottleneck=256`).

    python -m experiments.run --config=configs/transfer/bn_adapt.py:labels=10 \
        --workdir=runs/transfer/bn_adapt_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("bn_adapt", arg)

r"""Gradual unfreezing (ULMFiT-style): the head trains from step 0, conv2 (and the
bottleneck) from a third of the run, conv1 from two thirds (`(multiplier, from_step)` rules).

    python -m experiments.run --config=configs/transfer/gradual_unfreeze.py:labels=10 \
        --workdir=runs/transfer/gradual_unfreeze_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("gradual_unfreeze", arg)

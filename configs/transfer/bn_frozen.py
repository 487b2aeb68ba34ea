r"""Fine-tuning with frozen BatchNorm statistics (the pretrained running statistics
normalise and are kept). Needs a model with BatchNorm: the default `bottleneck=256`
(Linear→BN→ReLU), so pretrain with `pretrain_supervised.py:bottleneck=256`.

    python -m experiments.run --config=configs/transfer/bn_frozen.py:labels=10 \
        --workdir=runs/transfer/bn_frozen_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("bn_frozen", arg)

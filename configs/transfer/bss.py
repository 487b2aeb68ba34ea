r"""BSS fine-tuning (Chen et al. 2019): η=0.001 times the smallest squared singular value
of the feature batch (`tljax.methods.bss`).

    python -m experiments.run --config=configs/transfer/bss.py:labels=10 \
        --workdir=runs/transfer/bss_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("bss", arg)

r"""L2-SP fine-tuning (Li et al. 2018): α=0.1 towards the pretrained weights, β=0.01 on the
new head, no weight decay (`tljax.methods.l2sp`).

    python -m experiments.run --config=configs/transfer/l2sp.py:labels=10 \
        --workdir=runs/transfer/l2sp_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("l2sp", arg)

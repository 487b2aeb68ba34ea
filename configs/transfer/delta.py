r"""DELTA fine-tuning (Li et al. 2019): conv feature maps pulled towards the pretrained
network's (α=1e-3, β=0.01; TLlib's α=0.01 is unstable here, see common.py;
`tljax.methods.delta`).

    python -m experiments.run --config=configs/transfer/delta.py:labels=10 \
        --workdir=runs/transfer/delta_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("delta", arg)

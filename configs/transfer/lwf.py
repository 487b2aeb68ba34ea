r"""LwF fine-tuning (Li & Hoiem): the Fashion head is kept and distilled (T=3, λ=4, TLlib's
defaults); `old_head_from` is the pretraining run (`tljax.methods.lwf`).

    python -m experiments.run --config=configs/transfer/lwf.py:labels=10 \
        --workdir=runs/transfer/lwf_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("lwf", arg)

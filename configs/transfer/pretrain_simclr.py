r"""Self-supervised SimCLR pretraining on Fashion-MNIST (task ``fashion``), digits LeNet.

    python -m experiments.run --config=configs/transfer/pretrain_simclr.py \
        --workdir=runs/transfer/pretrain_simclr

1,000 steps of 64 images × 2 views, Adam 1e-3 with cosine decay; labels never reach the
backbone (the reported accuracy is the online linear probe's, see
``tljax.methods.simclr``). Argument keys: bottleneck, steps. Expected: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.pretrain("simclr", arg)

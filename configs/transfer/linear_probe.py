r"""Feature extraction (linear probe): the pretrained backbone is frozen (`None` rule, so
its gradients are never computed); only the new head trains.

    python -m experiments.run --config=configs/transfer/linear_probe.py:labels=10 \
        --workdir=runs/transfer/linear_probe_10

Argument keys (all optional): labels (per class, 0 = all), pretrain (workdir of a
pretraining run, default runs/transfer/pretrain_supervised), bottleneck, steps; see
configs/transfer/common.py. Expected digits test accuracy: docs/transfer.md.
"""

from configs.transfer import common


def get_config(arg: str = ""):
    return common.transfer("linear_probe", arg)

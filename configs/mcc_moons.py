r"""MCC on the two-moons toy (target rotated 30°).

Settings: MCC (temperature 2.5).

    python -m experiments.run --config=configs/mcc_moons.py \
        --workdir=runs/mcc_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("mcc")
    return c

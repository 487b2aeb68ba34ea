r"""Entropy minimisation on the two-moons toy (target rotated 30°).

Settings: target entropy minimisation (trade-off 0.1).

    python -m experiments.run --config=configs/entropy_moons.py \
        --workdir=runs/entropy_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("entropy")
    c.method.weight = 0.1
    return c

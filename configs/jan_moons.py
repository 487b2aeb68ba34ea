r"""JAN on the two-moons toy (target rotated 30°).

Settings: JAN (JMMD on features and softmax).

    python -m experiments.run --config=configs/jan_moons.py \
        --workdir=runs/jan_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("jan")
    return c

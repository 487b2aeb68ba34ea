r"""MCD on the two-moons toy (target rotated 30°).

Settings: MCD (two heads, 4 generator updates per iteration, TLlib's entropy term 0.01).

    python -m experiments.run --config=configs/mcd_moons.py \
        --workdir=runs/mcd_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("mcd")
    return c

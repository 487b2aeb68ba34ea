r"""DAN on the two-moons toy (target rotated 30°).

Settings: DAN (MK-MMD on the 768-d features, TLlib's linear-time estimator).

    python -m experiments.run --config=configs/dan_moons.py \
        --workdir=runs/dan_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("dan")
    return c

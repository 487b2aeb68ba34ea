r"""CDAN on the two-moons toy (target rotated 30°).

Settings: CDAN (randomized multilinear map: 768 x 10 > 4096).

    python -m experiments.run --config=configs/cdan_moons.py \
        --workdir=runs/cdan_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("cdan")
    moons_common.adversarial(c)
    return c

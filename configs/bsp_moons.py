r"""BSP on the two-moons toy (target rotated 30°).

Settings: DANN + BSP (β = 2e-4).

    python -m experiments.run --config=configs/bsp_moons.py \
        --workdir=runs/bsp_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("bsp")
    moons_common.adversarial(c, bsp_weight=2e-4)
    return c

r"""Mean teacher on the two-moons toy (target rotated 30°).

Settings: mean teacher (EMA decay 0.99, consistency trade-off 3 as TLlib).

    python -m experiments.run --config=configs/mean_teacher_moons.py \
        --workdir=runs/mean_teacher_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("mean_teacher")
    c.method.weight = 3.0
    return c

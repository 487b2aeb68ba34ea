r"""Deep CORAL on the two-moons toy (target rotated 30°).

Settings: Deep CORAL (TLlib's normalisation, which also matches means).

    python -m experiments.run --config=configs/coral_moons.py \
        --workdir=runs/coral_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("coral")
    c.method.hparams.style = "tllib"
    return c

r"""AFN on the two-moons toy (target rotated 30°).

Settings: SAFN (Δr = 1, trade-off 0.01).

    python -m experiments.run --config=configs/afn_moons.py \
        --workdir=runs/afn_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("afn")
    # TLlib's 0.05 grows the 32-d MLP features until training breaks down on the toy.
    c.method.weight = 0.01
    return c

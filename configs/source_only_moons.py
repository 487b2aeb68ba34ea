r"""Source only on the two-moons toy (target rotated 30°).

    python -m experiments.run --config=configs/source_only_moons.py --workdir=runs/source_only_moons

Runs in about a minute on a CPU; the DANN paper's toy (section 5.1.1).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("source_only")
    return c

r"""OSBP on open-set two moons (``open_set/moons``: one known moon; the other moon is in the
target only, labelled unknown), a smoke config with a 2-way (1 known + unknown) head.

    python -m experiments.run --config=configs/osbp_moons.py --workdir=runs/osbp_moons
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import moons_common


def get_config():
    c = moons_common.get_config("osbp")
    c.data.task = "open_set/moons"
    return c

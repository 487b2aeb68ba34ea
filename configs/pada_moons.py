r"""PADA on partial two moons (``partial/moons``: the target keeps one moon), a smoke config.

python -m experiments.run --config=configs/pada_moons.py --workdir=runs/pada_moons
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import moons_common


def get_config():
    c = moons_common.get_config("pada")
    moons_common.adversarial(c)
    c.data.task = "partial/moons"
    return c

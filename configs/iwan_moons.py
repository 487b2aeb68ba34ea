r"""IWAN on partial two moons (``partial/moons``: the target keeps one moon), a smoke config.

python -m experiments.run --config=configs/iwan_moons.py --workdir=runs/iwan_moons
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import moons_common


def get_config():
    c = moons_common.get_config("iwan")
    moons_common.adversarial(c)
    c.data.task = "partial/moons"
    return c

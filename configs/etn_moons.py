r"""ETN on partial two moons (``partial/moons``: the target keeps one moon), a smoke config.

python -m experiments.run --config=configs/etn_moons.py --workdir=runs/etn_moons
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import moons_common


def get_config():
    c = moons_common.get_config("etn")
    moons_common.adversarial(c)
    c.data.task = "partial/moons"
    return c

r"""OVANet on universal two moons (``universal/moons``: one moon shared, the other in the
target only, labelled unknown), a smoke config with a 2-way (1 source class + unknown)
head: one one-vs-all classifier, no negative class (the hardest-negative term is 0).

    python -m experiments.run --config=configs/ovanet_moons.py --workdir=runs/ovanet_moons
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import moons_common


def get_config():
    c = moons_common.get_config("ovanet")
    c.data.task = "universal/moons"
    return c

r"""UAN on universal two moons (``universal/moons``: one moon shared, the other in the target
only, labelled unknown; no source-private class), a smoke config with a 2-way (1 source
class + unknown) head, so UAN's entropy term is 0 and ``w_t = d'``.

    python -m experiments.run --config=configs/uan_moons.py --workdir=runs/uan_moons
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import moons_common


def get_config():
    c = moons_common.get_config("uan")
    moons_common.adversarial(c)
    c.data.task = "universal/moons"
    return c

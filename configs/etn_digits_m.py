r"""ETN on partial-set digits → digits-M (``partial/digits->digits_m``, 10 → 5 classes).

    python -m experiments.run --config=configs/etn_digits_m.py --workdir=runs/etn_digits_m

The full-length (1,500 steps) version of ``configs/digits_m_partial.py:etn`` (DANN's
100-unit discriminators for ``D`` and ``G̃``, GRL over the run, the reference trade-offs);
measured short runs: docs/label_sets.md.
"""

from configs import digits_m_common, digits_m_partial


def get_config():
    return digits_m_partial.get_config(f"etn,{digits_m_common.STEPS}")

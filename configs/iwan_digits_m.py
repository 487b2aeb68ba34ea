r"""IWAN on partial-set digits → digits-M (``partial/digits->digits_m``, 10 → 5 classes).

    python -m experiments.run --config=configs/iwan_digits_m.py --workdir=runs/iwan_digits_m

The full-length (1,500 steps) version of ``configs/digits_m_partial.py:iwan`` (DANN's
100-unit discriminators, GRL over the run, trade-off 1 as the other methods of the
table; TLlib's Office recipe uses 3); measured short runs: docs/label_sets.md.
"""

from configs import digits_m_common, digits_m_partial


def get_config():
    return digits_m_partial.get_config(f"iwan,{digits_m_common.STEPS}")

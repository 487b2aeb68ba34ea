r"""PADA on partial-set digits → digits-M (``partial/digits->digits_m``, 10 → 5 classes).

    python -m experiments.run --config=configs/pada_digits_m.py --workdir=runs/pada_digits_m

The full-length (1,500 steps) version of ``configs/digits_m_partial.py:pada``; measured
short runs: docs/label_sets.md.
"""

from configs import digits_m_common, digits_m_partial


def get_config():
    return digits_m_partial.get_config(f"pada,{digits_m_common.STEPS}")

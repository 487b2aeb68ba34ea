r"""OSBP on open-set digits → digits-M (``open_set/digits->digits_m``: 6 known + unknown).

    python -m experiments.run --config=configs/osbp_digits_m.py --workdir=runs/osbp_digits_m

The full-length (1,500 steps) version of ``configs/digits_m_open_set.py:osbp``; measured
short runs: docs/label_sets.md.
"""

from configs import digits_m_common, digits_m_open_set


def get_config():
    return digits_m_open_set.get_config(f"osbp,{digits_m_common.STEPS}")

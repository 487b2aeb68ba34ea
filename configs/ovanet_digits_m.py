r"""OVANet on universal digits → digits-M (``universal/digits->digits_m``: 4 shared, 3
source-private, 3 target-private classes → unknown).

    python -m experiments.run --config=configs/ovanet_digits_m.py --workdir=runs/ovanet_digits_m

The full-length (1,500 steps) version of ``configs/digits_m_universal.py:ovanet``; measured
short runs: docs/label_sets.md.
"""

from configs import digits_m_common, digits_m_universal


def get_config():
    return digits_m_universal.get_config(f"ovanet,{digits_m_common.STEPS}")

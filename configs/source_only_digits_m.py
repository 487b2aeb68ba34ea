r"""Source only on UCI digits → digits-M (MNIST-M recipe), offline.

    python -m experiments.run --config=configs/source_only_digits_m.py --workdir=runs/so

Expected (target test accuracy, last step): see the README's main table, which is
produced by ``bash experiments/main.sh``.
"""

from configs import digits_m_common


def get_config():
    return digits_m_common.get_config("source_only")

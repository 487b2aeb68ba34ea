r"""DANN on UCI digits → digits-M (MNIST-M recipe), offline.

    python -m experiments.run --config=configs/dann_digits_m.py --workdir=runs/dann_digits_m

Expected (target test accuracy, last step): see the README's main table, which is
produced by ``bash experiments/main.sh``.
"""

from configs import digits_m_common


def get_config():
    return digits_m_common.get_config("dann")

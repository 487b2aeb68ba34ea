r"""MCD on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: MCD (two heads, 4 generator updates per iteration, TLlib's entropy term 0.01).

    python -m experiments.run --config=configs/mcd_digits_m.py \
        --workdir=runs/mcd_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/mcd.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("mcd")
    return c

r"""MCC on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: MCC (temperature 2.5).

    python -m experiments.run --config=configs/mcc_digits_m.py \
        --workdir=runs/mcc_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/mcc.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("mcc")
    return c

r"""DAN on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: DAN (MK-MMD on the 768-d features, TLlib's linear-time estimator).

    python -m experiments.run --config=configs/dan_digits_m.py \
        --workdir=runs/dan_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/dan.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("dan")
    return c

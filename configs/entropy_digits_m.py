r"""Entropy minimisation on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: target entropy minimisation (trade-off 0.1).

    python -m experiments.run --config=configs/entropy_digits_m.py \
        --workdir=runs/entropy_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/entropy.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("entropy")
    c.method.weight = 0.1
    return c

r"""Deep CORAL on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: Deep CORAL (TLlib's normalisation, which also matches means).

    python -m experiments.run --config=configs/coral_digits_m.py \
        --workdir=runs/coral_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/coral.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("coral")
    c.method.hparams.style = "tllib"
    return c

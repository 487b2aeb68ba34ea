r"""MDD on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: MDD (margin 4; TLlib's bottleneck and adversarial head with a hidden layer).

    python -m experiments.run --config=configs/mdd_digits_m.py \
        --workdir=runs/mdd_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/mdd.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("mdd")
    c.model.bottleneck_dim = 256
    c.method.hparams.width = 1024
    return c

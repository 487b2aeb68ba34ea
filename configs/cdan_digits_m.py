r"""CDAN on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: CDAN (randomized multilinear map: 768 x 10 > 4096).

    python -m experiments.run --config=configs/cdan_digits_m.py \
        --workdir=runs/cdan_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/cdan.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("cdan")
    # The DANN digits discriminator and GRL schedule, for a like-for-like comparison.
    c.method.hparams.hidden = (100,)
    c.method.hparams.batch_norm = False
    c.method.hparams.grl_alpha = 10.0
    c.method.hparams.grl_max_iters = float(digits_m_common.STEPS)
    return c

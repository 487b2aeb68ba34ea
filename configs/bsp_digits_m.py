r"""BSP on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: DANN + BSP (β = 2e-4).

    python -m experiments.run --config=configs/bsp_digits_m.py \
        --workdir=runs/bsp_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/bsp.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("bsp")
    c.method.hparams.hidden = (100,)
    c.method.hparams.batch_norm = False
    c.method.hparams.grl_alpha = 10.0
    c.method.hparams.grl_max_iters = float(digits_m_common.STEPS)
    c.method.hparams.bsp_weight = 2e-4
    return c

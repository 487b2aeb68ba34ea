r"""Mean teacher on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: mean teacher (EMA decay 0.99, consistency trade-off 3 as TLlib).

    python -m experiments.run --config=configs/mean_teacher_digits_m.py \
        --workdir=runs/mean_teacher_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/mean_teacher.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("mean_teacher")
    c.method.weight = 3.0
    return c

r"""Self-training on UCI digits → digits-M (MNIST-M recipe), offline.

Settings: FixMatch-style self-training (τ = 0.9, in-step strong augmentation).

    python -m experiments.run --config=configs/self_training_digits_m.py \
        --workdir=runs/self_training_digits_m

Expected (target test accuracy, last step): compare with
``configs/source_only_digits_m.py`` and ``configs/dann_digits_m.py`` (the README's main
table, ``bash experiments/main.sh``); method settings are documented in
``tljax/methods/self_training.py``.
"""

from configs import digits_m_common


def get_config():
    c = digits_m_common.get_config("self_training")
    return c

r"""Self-training on the two-moons toy (target rotated 30°).

Settings: FixMatch-style self-training (τ = 0.9, in-step strong augmentation).

    python -m experiments.run --config=configs/self_training_moons.py \
        --workdir=runs/self_training_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("self_training")
    return c

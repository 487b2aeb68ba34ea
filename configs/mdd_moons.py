r"""MDD on the two-moons toy (target rotated 30°).

Settings: MDD (margin 4; TLlib's bottleneck and adversarial head with a hidden layer).

    python -m experiments.run --config=configs/mdd_moons.py \
        --workdir=runs/mdd_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("mdd")
    c.method.hparams.width = 32
    c.method.hparams.grl_max_iters = 250.0
    c.method.hparams.grl_hi = 1.0  # TLlib's 0.1 adapts too little in 2,000 toy steps
    return c

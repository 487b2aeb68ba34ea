r"""ADDA on the two-moons toy (target rotated 30°).

Settings: ADDA (500 source-only steps, then the inverted-label GAN; the paper's 500-500
discriminator).

    python -m experiments.run --config=configs/adda_moons.py \
        --workdir=runs/adda_moons

Runs in about a minute on a CPU. Expected: compare the target test accuracy with
``configs/source_only_moons.py`` (source only misclassifies part of the rotated moons).
"""

from configs import moons_common


def get_config():
    c = moons_common.get_config("adda")
    c.method.hparams.pretrain_steps = 500
    c.method.hparams.hidden = (32,)
    # The paper's optimizer (Adam, lr 2e-4, β1 = 0.5) for both stages: with SGD at the
    # common lr the discriminator wins and the target encoder drifts.
    c.optim.optimizer = "adam"
    c.optim.lr = 2e-4
    c.optim.b1 = 0.5
    c.optim.schedule = "constant"
    c.optim.weight_decay = 0.0
    return c

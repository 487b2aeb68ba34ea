"""Shared settings of the UCI digits → digits-M experiments (not a runnable config).

The digit network of the DANN paper (conv 5×5×32 → pool → conv 5×5×48 → pool → 768-d
features, 28×28×3 inputs standardised with source-train statistics), SGD with the
inverse-decay lr, 32 images per domain, 1,500 steps. For DANN, the paper's digits
setting: a 100-unit domain classifier without BatchNorm and the GRL schedule
``2/(1+exp(−10 p)) − 1`` over the run's progress ``p`` (alpha=10, N=steps).
"""

from tljax.config import base_config

STEPS = 1500


def get_config(method: str):
    c = base_config()
    c.data.task = "digits->digits_m"
    c.data.image_size = 28
    c.data.batch_size = 32
    c.data.standardize = True
    c.model.backbone = "lenet"
    c.model.backbone_kwargs.padding = "VALID"
    c.model.bottleneck_dim = 0
    c.method.name = method
    if method == "dann":
        c.method.hparams.hidden = (100,)
        c.method.hparams.batch_norm = False
        c.method.hparams.grl_alpha = 10.0
        c.method.hparams.grl_max_iters = float(STEPS)
    c.optim.lr = 0.01
    c.optim.schedule = "inverse_decay"
    c.train.steps = STEPS
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

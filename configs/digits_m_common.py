"""Shared settings of the UCI digits → digits-M experiments (not a runnable config).

The UCI digits are 8×8 scans; they are upsampled to 16×16 (more pixels would add no
information and cost time) and fed to the DANN paper's digit network with SAME padding
(conv 5×5×32 → pool → conv 5×5×48 → pool → 768-d features).
"""

from tljax.config import base_config


def get_config(method: str):
    c = base_config()
    c.data.task = "digits->digits_m"
    c.data.image_size = 16
    c.data.batch_size = 32
    c.model.backbone = "lenet"
    c.model.backbone_kwargs.padding = "SAME"
    c.model.bottleneck_dim = 0
    c.method.name = method
    c.optim.lr = 0.01
    c.optim.schedule = "inverse_decay"
    c.train.steps = 1500
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

"""Shared settings of the UCI digits → digits-M experiments (not a runnable config)."""

from tljax.config import base_config


def get_config(method: str):
    c = base_config()
    c.data.task = "digits->digits_m"
    c.data.image_size = 28
    c.data.batch_size = 64
    c.model.backbone = "lenet"
    c.model.bottleneck_dim = 0
    c.method.name = method
    c.optim.lr = 0.01
    c.optim.schedule = "inverse_decay"
    c.train.steps = 1500
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    return c

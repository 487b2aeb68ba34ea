"""A tiny, fast config for end-to-end tests: ``tests/configs/tiny.py:<method>,<task>``."""

from tljax.config import base_config


def get_config(arg: str = "dann,digits->digits_m"):
    method, task = arg.split(",")
    c = base_config()
    c.data.task = task
    c.data.batch_size = 16
    if task == "moons":
        c.model.backbone = "mlp"
        c.model.backbone_kwargs.hidden = (16, 16)
    else:
        c.data.image_size = 16
        c.model.backbone = "lenet"
        c.model.backbone_kwargs.channels = (4, 8)
    c.method.name = method
    if method in ("dann", "cdan", "bsp", "adda"):
        c.method.hparams.hidden = (32,)
    if method == "mdd":
        c.method.hparams.width = 32
    if method == "adda":
        c.method.hparams.pretrain_steps = 20  # half of the 40 steps
    c.optim.lr = 0.02
    c.train.steps = 40
    c.train.log_every = 10
    c.train.eval_every = 20
    c.train.checkpoint_every = 20
    c.train.eval_batch_size = 200
    c.train.progress = False
    c.train.tensorboard = False
    return c

"""``configs/dg.py`` at test size: ``tests/configs/dg_small.py:<method>,rotated_digits``.

Three angles (0°, 30°, 60°), 14×14 images, a LeNet with 4/8 channels, 8 images per domain
and step, 4 steps: for end-to-end tests of ``experiments.dg``.
"""

from configs.dg import get_config as dg_config


def get_config(arg: str = "erm,rotated_digits"):
    c = dg_config(arg)
    c.data.task_kwargs.angles = (0, 30, 60)
    c.data.image_size = 14
    c.data.batch_size = 8
    c.model.backbone_kwargs.channels = (4, 8)
    c.train.steps = 4
    c.train.eval_every = 2
    c.train.log_every = 2
    c.train.checkpoint_every = 4
    c.train.eval_batch_size = 200
    return c

"""Domain generalization and multi-source adaptation on the offline domain sets:
``dg.py:<method>,<set>``.

DomainBed's protocol (Gulrajani & Lopez-Paz, ICLR 2021) at CPU scale: the network of the
DANN paper's digits experiments (LeNet, conv 32/48, ``'SAME'`` padding), Adam at a constant
learning rate 1e-3 without weight decay (DomainBed's defaults), 32 examples *per training
domain* per step, ``STEPS`` steps, evaluation every ``EVAL_EVERY`` steps on every domain's
out split (training-domain validation) and on the held-out domain (its in split is the
reported test accuracy, its out split the oracle's), no augmentation.

* ``<set>``: ``rotated_digits`` (6 domains), ``colored_fashion`` (3), ``digits_styles``
  (4), or a photo set when prepared (``pacs``, ``vlcs``, ``office_home_dg``,
  ``terra_incognita``, ``domainnet_dg``: use a ResNet config for those).
* ``<method>``: a DG method (``erm``, ``irm``, ``vrex``, ``group_dro``, ``mixup``,
  ``dg_coral``, ``dg_mmd``, ``dg_dann``, ``cdann``) for ``dg/<set>``, or a multi-source one
  (``m3sda``, ``ms_dann``, or any single-source method on the pooled sources) for
  ``msda/<set>`` with ``msda`` as a third argument: ``dg.py:m3sda,digits_styles,msda``.

The held-out domain is ``--config.data.task_kwargs.test=<domain>`` (default: the set's
last one; ``target=`` for ``msda``); the leave-one-domain-out protocol over every held-out
domain with a hyperparameter search is ``python -m experiments.dg`` (``docs/
domain_generalization.md``). One run::

    python -m experiments.run --config=configs/dg.py:irm,colored_fashion \\
        --config.data.task_kwargs.test=-90% --workdir=runs/dg_irm
"""

from tljax.config import base_config

STEPS = 1000
EVAL_EVERY = 100


def get_config(arg: str = "erm,rotated_digits"):
    parts = arg.split(",")
    method, name = parts[0], parts[1]
    setting = parts[2] if len(parts) > 2 else "dg"
    c = base_config()
    c.data.task = f"{setting}/{name}"
    if setting == "dg":  # "": the set's last domain
        c.data.task_kwargs.test = ""
        c.data.task_kwargs.val = ""
    else:
        c.data.task_kwargs.target = ""
    if name == "colored_fashion":  # the IRM paper's 14×14 (DomainBed's code keeps 28)
        c.data.image_size = 14
    c.data.batch_size = 32
    c.data.source_val_fraction = 0.0  # each domain's out split validates (DomainBed)
    c.model.backbone = "lenet"
    c.model.backbone_kwargs.padding = "SAME"
    c.method.name = method
    if method == "m3sda":
        # λ picked by training-domain validation (no target labels) over 0.01, 0.03, 0.1
        # on msda/digits_styles, 4 targets × 3 seeds; λ ≥ 0.3 collapses the features to a
        # constant (moment distance 0, chance accuracy; docs/domain_generalization.md).
        c.method.weight = 0.03
    c.optim.optimizer = "adam"
    c.optim.schedule = "constant"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.train.steps = STEPS
    c.train.steps_per_call = 1
    c.train.log_every = EVAL_EVERY
    c.train.eval_every = EVAL_EVERY
    c.train.checkpoint_every = STEPS
    c.train.eval_batch_size = 1000
    c.train.progress = False
    c.train.tensorboard = False
    return c

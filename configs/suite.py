r"""The offline benchmark suite: every adaptation method on every offline task.

One config file for all cells, ``configs/suite.py:<method>,<task>``: the method's own
config for that task family (``configs/<method>_moons.py`` or
``configs/<method>_digits_m.py``: the same architecture, optimizer and method settings as
the single-task tables) with the suite's shorter budget for the image tasks:

* ``moons``: the DANN toy (two moons → rotated by 30°), MLP, 2,000 steps (as
  ``configs/<method>_moons.py``);
* ``digits_m``: UCI digits → digits-M (MNIST-M recipe), LeNet, ``STEPS`` steps;
* ``fashion_m``: Fashion-MNIST → Fashion-M (MNIST-M recipe; needs
  ``apt-get install dataset-fashion-mnist``), LeNet, ``STEPS`` steps, a seeded
  subsample of ``FASHION_TRAIN`` / ``FASHION_TEST`` images per split (both domains).

Every cell holds out ``SOURCE_VAL`` of the source training images (seeded) as labelled
source validation data, so that the report can select by source validation accuracy and
by DEV (importance-weighted validation risk) beside the target-only scores.

Step-dependent settings follow the budget: the GRL warm-start horizon (``grl_max_iters``)
is the run's length and ADDA pretrains for a third of it. The whole suite (15 methods × 3
tasks × 3 seeds) runs with ``bash experiments/suite.sh``; one cell:

    python -m experiments.run --config=configs/suite.py:dann,digits_m --workdir=runs/x
"""

import importlib

METHODS = (
    "source_only",
    "dann",
    "cdan",
    "dan",
    "jan",
    "coral",
    "mcc",
    "afn",
    "bsp",
    "entropy",
    "mdd",
    "mcd",
    "adda",
    "self_training",
    "mean_teacher",
)
TASKS = ("moons", "digits_m", "fashion_m")
STEPS = 600  # digits_m and fashion_m
FASHION_TRAIN = 10000
FASHION_TEST = 2000
SOURCE_VAL = 0.1  # fraction of source train held out for model selection


def get_config(arg: str = "dann,digits_m"):
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) != 2 or parts[0] not in METHODS or parts[1] not in TASKS:
        raise ValueError(
            f"configs/suite.py takes '<method>,<task>', got {arg!r}; methods: "
            f"{', '.join(METHODS)}; tasks: {', '.join(TASKS)}."
        )
    method, task = parts
    family = "moons" if task == "moons" else "digits_m"
    c = importlib.import_module(f"configs.{method}_{family}").get_config()
    c.data.source_val_fraction = SOURCE_VAL
    if task == "moons":
        return c
    c.train.steps = STEPS
    c.train.eval_every = STEPS // 2
    c.train.checkpoint_every = STEPS // 2
    hp = c.method.hparams
    if "grl_max_iters" in hp:
        hp.grl_max_iters = float(STEPS)
    if method == "adda":
        hp.pretrain_steps = STEPS // 3
    if task == "fashion_m":
        c.data.task = "fashion->fashion_m"
        c.data.task_kwargs = {"max_train": FASHION_TRAIN, "max_test": FASHION_TEST}
        c.train.eval_batch_size = 1000
    return c

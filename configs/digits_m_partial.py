"""Partial-set digits → digits-M: ``digits_m_partial.py:<method>[,<steps>]``.

``partial/digits->digits_m`` (:mod:`tljax.data.label_sets`): the source has the 10 digits,
the target a seeded 5 of them (``label_seed=0``: original digits 0, 1, 2, 7, 9 ... see
``LabelSetTask.source_classes``). The DANN-paper digit network and recipe of
``configs/digits_m_common.py``, shortened (``steps``, default 600). Methods:
``source_only``, ``dann`` (closed-set), ``pada``, ``iwan``, ``etn``. Measured with
``python -m configs.run_partial_open_set`` (docs/label_sets.md)::

    python -m experiments.run --config=configs/digits_m_partial.py:pada \
        --workdir=runs/partial_pada
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import digits_m_common

STEPS = 600


def get_config(arg: str = "pada"):
    method, _, steps = arg.partition(",")
    c = digits_m_common.get_config("dann" if method in ("pada", "iwan", "etn") else method)
    c.method.name = method
    if method in ("dann", "pada", "iwan", "etn"):
        c.method.hparams.grl_max_iters = float(int(steps or STEPS))
    if method == "etn":
        # ETN sums the two adversarial sides (mean weight 1); λ = 0.5 is DANN's ½(BCE_s +
        # BCE_t) scale, as UAN's digits config. With λ = 1 seed 2 diverged (features blew
        # up by step 300, every weight 0; docs/label_sets.md).
        c.method.weight = 0.5
    c.data.task = "partial/digits->digits_m"
    c.train.steps = int(steps or STEPS)
    c.train.eval_every = c.train.steps
    c.train.checkpoint_every = c.train.steps
    return c

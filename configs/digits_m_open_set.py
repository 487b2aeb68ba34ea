"""Open-set digits → digits-M: ``digits_m_open_set.py:<method>[,<steps>]``.

``open_set/digits->digits_m`` (:mod:`tljax.data.label_sets`): digits 0-5 shared, 6-9 in
the target only, labelled unknown (= 6); a 7-way head (``num_classes = 7``). The digit
network and recipe of ``configs/digits_m_common.py``, shortened (``steps``, default 600).
Methods: ``source_only``, ``dann`` (closed-set: the unknown output is never trained),
``osbp``, ``ovanet`` (its one-vs-all rule; ``configs/digits_m_universal.py``). Measured
with ``python -m configs.run_partial_open_set`` (docs/label_sets.md).
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import digits_m_common

STEPS = 600


def get_config(arg: str = "osbp"):
    method, _, steps = arg.partition(",")
    c = digits_m_common.get_config(method)
    if method == "dann":
        c.method.hparams.grl_max_iters = float(int(steps or STEPS))
    c.data.task = "open_set/digits->digits_m"
    c.train.steps = int(steps or STEPS)
    c.train.eval_every = c.train.steps
    c.train.checkpoint_every = c.train.steps
    return c

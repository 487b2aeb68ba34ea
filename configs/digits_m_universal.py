"""Universal digits → digits-M: ``digits_m_universal.py:<method>[,<steps>]``.

``universal/digits->digits_m`` (:mod:`tljax.data.label_sets`): digits 0-3 shared, 4-6 in
the source only, 7-9 in the target only, labelled unknown (= 7); an 8-way head
(``num_classes = 8``). The digit network and recipe of ``configs/digits_m_common.py``,
shortened (``steps``, default 600). Methods: ``source_only`` and ``dann`` (closed-set:
the unknown output is never trained, arg-max predictions), ``uan`` (unknown when its
transferability ``w_t < w_0``), ``ovanet`` (unknown when the predicted class's
one-vs-all classifier says "not it" with probability > 0.5). UAN's two discriminators
are DANN's digit one (100 units, no BatchNorm) with the same GRL schedule over the run,
and ``method.weight = 0.5``. Every
evaluation logs the H-score and the known/unknown accuracies (``target_test_h_score``,
``target_test_os_star``, ``target_test_unk``; docs/label_sets.md)::

    python -m experiments.run --config=configs/digits_m_universal.py:uan \
        --workdir=runs/universal_uan

Measured with ``python -m configs.run_partial_open_set --settings=universal``.
"""

import tljax.data.label_sets  # noqa: F401  (registers partial/, open_set/, universal/)
from configs import digits_m_common

STEPS = 600


def get_config(arg: str = "uan"):
    method, _, steps = arg.partition(",")
    c = digits_m_common.get_config("dann" if method == "uan" else method)
    c.method.name = method
    if method in ("dann", "uan"):
        c.method.hparams.grl_max_iters = float(int(steps or STEPS))
    if method == "uan":
        # UAN sums the two weighted sides (mean weight 1); λ = 0.5 is DANN's ½(BCE_s + BCE_t)
        # scale. With λ = 1, seed 1 diverged (NaN at step 131 of 600; docs/label_sets.md).
        c.method.weight = 0.5
    c.data.task = "universal/digits->digits_m"
    c.train.steps = int(steps or STEPS)
    c.train.eval_every = c.train.steps
    c.train.checkpoint_every = c.train.steps
    return c

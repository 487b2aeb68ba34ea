"""Measures the label-set settings (docs/label_sets.md): each method × seed, one short run,
then the task's metrics (:func:`tljax.evaluate_label_sets.task_metrics`) on the target
test split::

    python -m configs.run_partial_open_set --steps=600 --seeds=0,1,2 --out=runs/label_sets
"""

import argparse
import json
import os

import jax
import numpy as np

import tljax.data.label_sets  # noqa: F401
from configs import digits_m_open_set, digits_m_partial
from tljax import evaluate, evaluate_label_sets
from tljax.data import get_task
from tljax.loop import train_and_evaluate
from tljax.plots import restore_run

SETTINGS = {
    "partial": (digits_m_partial, ("source_only", "dann", "pada")),
    "open_set": (digits_m_open_set, ("source_only", "dann", "osbp")),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--settings", default="partial,open_set")
    p.add_argument("--out", default="runs/label_sets")
    a = p.parse_args()
    for setting in a.settings.split(","):
        module, methods = SETTINGS[setting]
        for method in methods:
            for seed in map(int, a.seeds.split(",")):
                c = module.get_config(f"{method},{a.steps}")
                c.seed = seed
                wd = os.path.join(a.out, f"{setting}_{method}_{seed}")
                train_and_evaluate(c, wd)
                parts, state = restore_run(wd)
                task = parts["task"]  # standardised: a plain Task; the labels are the same
                meta = get_task(c.data.task, data_seed=c.data.data_seed)
                logits, _ = evaluate.predict(
                    jax.jit(parts["eval_step"]), state.params, state.rest, task.target.test.x
                )
                m = evaluate_label_sets.task_metrics(
                    meta, task.target.test.y, np.asarray(logits).argmax(-1)
                )
                rec = {"setting": setting, "method": method, "seed": seed, **m}
                print(json.dumps(rec), flush=True)
                with open(os.path.join(a.out, "results.jsonl"), "a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()

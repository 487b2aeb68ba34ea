"""Measures the label-set settings (docs/label_sets.md): each method × seed, one short run,
then the task's metrics on the target test split, as the run logged them in its
``results.json`` (:func:`tljax.evaluate_label_sets.evaluation_metrics`: arg-max
predictions, or the method's own rule, e.g. UAN's unknown threshold)::

    python -m configs.run_partial_open_set --steps=600 --seeds=0,1,2 --out=runs/label_sets
    python -m configs.run_partial_open_set --settings=universal --out=runs/label_sets

Each run appends one line to ``<out>/results.jsonl``; at the end the mean ± std (sample,
ddof=1) over seeds of every metric is printed per setting and method, in percent.

On the partial task the importance-weighting methods (``iwan``, ``etn``) also get
``weight_target_classes`` / ``weight_other_classes``: the mean transferability weight the
trained run gives the source *test* images of the classes the target has and of the
others (normalised to mean 1 over the split): a partial method's weights should favour
the first.

``--threshold=τ`` adds, for the closed-set methods (``source_only``, ``dann``) on the
open-set and universal tasks, a row ``<method>+conf<τ>``: the same trained run with a
sample predicted unknown when its top softmax probability over the known classes is
below ``τ`` (:func:`tljax.evaluate_label_sets.predict_labels`). A finished run is not
trained again (its workdir holds the last checkpoint), so this can follow a measurement.
"""

import argparse
import json
import os

import jax
import numpy as np

import tljax.data.label_sets  # noqa: F401
from configs import digits_m_open_set, digits_m_partial, digits_m_universal
from tljax import evaluate
from tljax.evaluate_label_sets import PREFIX, SETTING_METRICS, evaluation_metrics, predict_labels
from tljax.loop import train_and_evaluate
from tljax.plots import restore_run

SETTINGS = {
    "partial": (digits_m_partial, ("source_only", "dann", "pada", "iwan", "etn")),
    "open_set": (digits_m_open_set, ("source_only", "dann", "osbp", "ovanet")),
    "universal": (digits_m_universal, ("source_only", "dann", "uan", "ovanet")),
}


def summary(records: list[dict]) -> str:
    """Mean ± std (%) over seeds per (setting, method), one markdown table per setting."""
    out = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        keys = ["accuracy", *SETTING_METRICS[setting]]
        if setting != "partial":
            keys.append("unknown_rate")
        else:
            keys += ["weight_target_classes", "weight_other_classes"]
        out += [f"{setting}:", "| method | " + " | ".join(keys) + " | seeds |"]
        out.append("|" + "---|" * (len(keys) + 2))
        rs = [r for r in records if r["setting"] == setting]
        for method in dict.fromkeys(r["method"] for r in rs):
            mine = [r for r in rs if r["method"] == method]
            cells = []
            for k in keys:
                if not all(k in r for r in mine):
                    cells.append("–")
                    continue
                scale = 1 if k.startswith("weight_") else 100
                v = scale * np.array([r[k] for r in mine], float)
                d = 2 if k.startswith("weight_") else 1
                sd = v.std(ddof=1) if v.size > 1 else 0.0
                cells.append(f"{v.mean():.{d}f} ± {sd:.{d}f}")
            seeds = ",".join(str(r["seed"]) for r in mine)
            out.append(f"| {method} | " + " | ".join(cells) + f" | {seeds} |")
        out.append("")
    return "\n".join(out)


def thresholded(workdir: str, rec: dict, threshold: float) -> dict:
    """``rec`` of the run in ``workdir`` with unknown below a softmax confidence."""
    parts, state = restore_run(workdir)
    task = parts["task"]
    logits, _ = evaluate.predict(
        jax.jit(parts["eval_step"]), state.params, state.rest, task.target.test.x
    )
    pred = predict_labels(logits, unknown_label=task.unknown_label, threshold=threshold)
    m = evaluation_metrics(task, task.target.test.y, pred)
    out = {**rec, "method": f"{rec['method']}+conf{threshold:g}"}
    out["accuracy"] = float(np.mean(pred == task.target.test.y))
    out.update({k[len(PREFIX) :]: v for k, v in m.items()})
    return out


def source_weights_by_class(workdir: str, method: str) -> dict:
    """Mean transferability weight of the trained run's source test images of the
    target's classes and of the others (weights normalised to mean 1 over the split)."""
    import jax.numpy as jnp
    from flax import nnx

    parts, state = restore_run(workdir)
    task = parts["task"]
    net = nnx.merge(parts["graphs"].eval_graph, state.params, state.rest)
    x, y = task.source.test.x, task.source.test.y
    f = jnp.concatenate(
        [net.model(jnp.asarray(x[i : i + 256]))[1]["features"] for i in range(0, len(x), 256)]
    ).astype(jnp.float32)
    if method == "etn":
        from tljax.methods.etn import leaky_log_softmax

        log_not_d = np.asarray(leaky_log_softmax(net.method.auxiliary(f))[-1], np.float64)
        w = np.exp(log_not_d - log_not_d.max())
    else:  # iwan: 1 − σ(D(f))
        w = 1.0 - np.asarray(jax.nn.sigmoid(net.method.weight_discriminator(f)), np.float64)
    w = w / w.mean()
    inside = np.isin(y, np.unique(task.target.test.y))
    return {
        "weight_target_classes": float(w[inside].mean()),
        "weight_other_classes": float(w[~inside].mean()),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--settings", default="partial,open_set")
    p.add_argument("--methods", default="", help="comma-separated subset (default: all)")
    p.add_argument("--out", default="runs/label_sets")
    p.add_argument("--threshold", type=float, default=0.0, help="confidence rows (see doc)")
    a = p.parse_args()
    records = []
    for setting in a.settings.split(","):
        module, methods = SETTINGS[setting]
        for method in methods:
            if a.methods and method not in a.methods.split(","):
                continue
            for seed in map(int, a.seeds.split(",")):
                c = module.get_config(f"{method},{a.steps}")
                c.seed = seed
                wd = os.path.join(a.out, f"{setting}_{method}_{seed}")
                res = train_and_evaluate(c, wd)
                rec = {"setting": setting, "method": method, "seed": seed}
                rec["accuracy"] = res["target_test_acc"]
                rec.update({k[len(PREFIX) :]: v for k, v in res.items() if k.startswith(PREFIX)})
                rec.pop("acc", None)
                rec["wall_time_s"] = res["wall_time_s"]
                if setting == "partial" and method in ("iwan", "etn"):
                    rec.update(source_weights_by_class(wd, method))
                recs = [rec]
                if a.threshold and setting != "partial" and method in ("source_only", "dann"):
                    recs.append(thresholded(wd, rec, a.threshold))
                for r in recs:
                    print(json.dumps(r), flush=True)
                    records.append(r)
                    with open(os.path.join(a.out, "results.jsonl"), "a") as f:
                        f.write(json.dumps(r) + "\n")
    print(summary(records))


if __name__ == "__main__":
    main()

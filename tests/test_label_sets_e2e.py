"""Label-set tasks end to end: every evaluation of a ``partial/``, ``open_set/`` or
``universal/`` run logs the setting's metrics (metrics.jsonl, results.json,
``by_selection_rule``), equal to an independent NumPy computation from the restored run's
predictions; the report's tables show them."""

import json
import os

import jax
import numpy as np
import pytest

import tljax.data.label_sets  # noqa: F401  (registers the names)
from tests.configs import tiny
from tljax import evaluate, report
from tljax.loop import train_and_evaluate
from tljax.plots import restore_run

SETTINGS = {
    "partial": ("target_test_partial_accuracy",),
    "open_set": ("target_test_os_star", "target_test_unk", "target_test_os", "target_test_hos"),
    "universal": (
        "target_test_h_score",
        "target_test_os_star",
        "target_test_unk",
        "target_test_os",
        "target_test_hos",
    ),
}


def tiny_config(setting: str, method: str = "source_only", steps: int = 6):
    c = tiny.get_config(f"{method},{setting}/digits->digits_m")
    c.train.steps = steps
    c.train.log_every = steps // 2
    c.train.eval_every = steps // 2
    c.train.checkpoint_every = steps
    return c


def numpy_metrics(setting, y, p, shared, unknown):
    """The metrics from a confusion matrix (independent of tljax.evaluate_label_sets)."""
    n = max(y.max(), p.max()) + 1
    cm = np.zeros((n, n))
    np.add.at(cm, (y, p), 1)
    per_class = np.diag(cm) / np.maximum(cm.sum(1), 1)
    present = cm.sum(1) > 0
    known = [c for c in shared if present[c]]
    os_star = per_class[known].mean()
    if setting == "partial":
        return {"target_test_partial_accuracy": os_star}
    unk = per_class[unknown]
    hos = 0.0 if os_star + unk == 0 else 2 * os_star * unk / (os_star + unk)
    out = {
        "target_test_os_star": os_star,
        "target_test_unk": unk,
        "target_test_os": (per_class[known].sum() + unk) / (len(known) + 1),
        "target_test_hos": hos,
        "target_test_unknown_rate": np.mean(p == unknown),
    }
    if setting == "universal":
        out["target_test_h_score"] = hos
    return out


def check_run(workdir, setting, predict=None):
    """results.json, metrics.jsonl and by_selection_rule hold the setting's metrics, and
    the final ones equal :func:`numpy_metrics` of the restored run's predictions."""
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    parts, state = restore_run(workdir)
    task = parts["task"]
    assert task.setting == setting  # the metadata survives the loop's standardisation
    logits, feats = evaluate.predict(
        jax.jit(parts["eval_step"]), state.params, state.rest, task.target.test.x
    )
    p = logits.argmax(-1) if predict is None else np.asarray(predict(parts, state, logits, feats))
    want = numpy_metrics(setting, task.target.test.y, p, task.shared, task.unknown_label)
    for k, v in want.items():
        assert results[k] == pytest.approx(v, abs=1e-12), k
    assert set(SETTINGS[setting]) <= set(results)
    evals = [
        json.loads(line)
        for line in open(os.path.join(workdir, "metrics.jsonl"))
        if json.loads(line)["kind"] == "eval"
    ]
    assert len(evals) == 2 and all(set(SETTINGS[setting]) <= set(e) for e in evals)
    assert evals[-1][SETTINGS[setting][0]] == results[SETTINGS[setting][0]]
    sel = results["by_selection_rule"]
    assert {"last", "oracle", "entropy"} <= set(sel)
    for rule in sel.values():  # each rule's step carries the metrics logged at that step
        row = next(e for e in evals if e["step"] == rule["step"])
        assert all(rule[k] == row[k] for k in SETTINGS[setting])
    return results


@pytest.mark.parametrize("setting", ["partial", "open_set", "universal"])
def test_results_hold_the_settings_metrics(setting, tmp_path):
    train_and_evaluate(tiny_config(setting), str(tmp_path / setting))
    results = check_run(str(tmp_path / setting), setting)
    rows = report.collect(str(tmp_path))
    table = report.label_set_table(rows)
    names = [k.removeprefix("target_test_") for k in SETTINGS[setting]]
    assert all(n in table.columns for n in names)
    cell = table.rows[0][table.columns.index(names[0])]
    assert cell == pytest.approx((100 * results[SETTINGS[setting][0]], 0.0))
    head = report.headline_table(rows, rule="oracle", metric=SETTINGS[setting][0])
    want = 100 * results["by_selection_rule"]["oracle"][SETTINGS[setting][0]]
    assert head.rows[0][2] == pytest.approx((want, 0.0))
    assert SETTINGS[setting][0] in report.to_markdown(head)


def test_uan_run_logs_metrics_of_its_unknown_rule(tmp_path):
    """UAN's predictions (unknown where the raw w_t < w_0) behind the logged metrics,
    recomputed in NumPy from the restored run's D' logits and class logits."""
    from flax import nnx

    c = tiny_config("universal", "uan", steps=20)
    c.method.hparams.hidden = (32,)
    c.method.hparams.w0 = W0 = -0.3  # the median w_t of this tiny run: both sides occur

    def predict(parts, state, logits, feats):
        net = nnx.merge(parts["graphs"].eval_graph, state.params, state.rest)
        aux = np.asarray(net.method.auxiliary(feats), np.float64)
        k = logits.shape[1] - 1
        z = logits[:, :k].astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        h = -(p * np.log(p)).sum(1) / np.log(k)
        w_t = 1 / (1 + np.exp(-aux)) - h
        return np.where(w_t < W0, k, z.argmax(1))

    train_and_evaluate(c, str(tmp_path))
    results = check_run(str(tmp_path), "universal", predict=predict)
    assert 0 < results["target_test_unknown_rate"] < 1
    assert results["target_test_unk"] > 0


def test_ovanet_run_logs_metrics_of_its_one_vs_all_rule(tmp_path):
    """OVANet's predictions (unknown where the predicted class's one-vs-all classifier
    says "not it" with probability > threshold) behind the logged metrics, recomputed in
    NumPy from the restored run's one-vs-all kernel and features."""
    c = tiny_config("universal", "ovanet", steps=20)

    def predict(parts, state, logits, feats):
        kernel = np.asarray(state.params["method"]["heads"]["kernel"], np.float64)
        k = logits.shape[1] - 1
        z = (np.asarray(feats, np.float64) @ kernel).reshape(len(feats), 2, k)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        pred = logits[:, :k].argmax(1)
        return np.where(p[np.arange(len(pred)), 0, pred] > 0.5, k, pred)

    train_and_evaluate(c, str(tmp_path))
    results = check_run(str(tmp_path), "universal", predict=predict)
    assert 0 < results["target_test_unknown_rate"] < 1


def test_closed_set_runs_log_no_label_set_metrics():
    from tljax.evaluate_label_sets import evaluation_metrics, logged_keys

    class Plain:  # a closed-set task has no ``setting``
        pass

    assert evaluation_metrics(Plain(), np.zeros(3, int), np.zeros(3, int)) == {}
    assert report.label_set_table([{"task": "t", "method": "m", "seed": 0}]).rows == []
    assert "target_test_h_score" in logged_keys()

"""Evaluation metrics, model-selection scores and rule-based selection."""

import math

import numpy as np
import pytest

from tljax import evaluate, report


def test_accuracy_and_per_class():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    y = np.array([0, 1, 1, 1])
    assert evaluate.accuracy(logits, y) == 0.75
    np.testing.assert_allclose(evaluate.per_class_accuracy(logits, y, 3), [1.0, 2 / 3, np.nan])
    assert evaluate.mean_class_accuracy(logits, y, 3) == pytest.approx((1 + 2 / 3) / 2)


def test_entropy_and_im_extremes():
    c = 5
    uniform = np.zeros((10, c))
    assert evaluate.neg_entropy_score(uniform) == pytest.approx(-math.log(c))
    assert evaluate.information_maximization_score(uniform) == pytest.approx(0.0, abs=1e-9)
    confident_diverse = 50.0 * np.eye(c)[np.arange(10) % c]
    assert evaluate.neg_entropy_score(confident_diverse) == pytest.approx(0.0, abs=1e-12)
    assert evaluate.information_maximization_score(confident_diverse) == pytest.approx(
        math.log(c), rel=1e-6
    )
    collapsed = 50.0 * np.eye(c)[np.zeros(10, int)]
    assert evaluate.information_maximization_score(collapsed) == pytest.approx(0.0, abs=1e-9)


def test_snd_against_loops():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    ents = []
    for i in range(7):
        s = np.array([p[i] @ p[j] / 0.05 for j in range(7) if j != i])
        q = np.exp(s - s.max())
        q /= q.sum()
        ents.append(-(q * np.log(q)).sum())
    assert evaluate.snd_score(None, logits) == pytest.approx(np.mean(ents), rel=1e-9)


def test_dev_equals_mean_loss_when_domains_match():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 3))
    logits = rng.normal(size=(400, 4))
    y = rng.integers(0, 4, 400)
    ce = -np.log(np.exp(logits)[np.arange(400), y] / np.exp(logits).sum(1))
    # Target drawn from the same distribution: weights ~1, DEV ~ the plain mean loss.
    dev = -evaluate.dev_score(f, logits, y, rng.normal(size=(400, 3)))
    assert dev == pytest.approx(ce.mean(), rel=0.05)


def test_proxy_a_distance_extremes():
    rng = np.random.default_rng(0)
    same = evaluate.proxy_a_distance(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)))
    apart = evaluate.proxy_a_distance(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 5)
    assert same < 0.3 and apart > 1.9


def test_select_by_rules_picks_the_right_steps():
    rows = [
        {
            "step": 10,
            "target_test_acc": 0.5,
            "source_val_acc": 0.9,
            "target_neg_entropy": -1.0,
            "target_im": 0.1,
            "target_snd": 3.0,
            "target_neg_dev": -2.0,
        },
        {
            "step": 20,
            "target_test_acc": 0.7,
            "source_val_acc": 0.8,
            "target_neg_entropy": -0.5,
            "target_im": 0.3,
            "target_snd": 2.0,
            "target_neg_dev": -3.0,
        },
        {
            "step": 30,
            "target_test_acc": 0.6,
            "source_val_acc": 0.85,
            "target_neg_entropy": -0.7,
            "target_im": 0.2,
            "target_snd": 1.0,
            "target_neg_dev": -1.0,
        },
    ]
    sel = report.select_by_rules(rows)
    assert {k: v["step"] for k, v in sel.items()} == {
        "source_val": 10,
        "entropy": 20,
        "im": 20,
        "snd": 10,
        "dev": 30,
        "last": 30,
        "oracle": 20,
    }
    assert sel["oracle"]["target_test_acc"] == 0.7
    table = report.selection_table([{"task": "t", "method": "m", "by_selection_rule": sel}])
    assert "| t | m | 50.0 ± 0.0 |" in table

"""Metrics of label-set mismatch against hand-computed examples and their properties."""

import math

import numpy as np
import pytest

from tljax import evaluate_label_sets as m


def test_partial_accuracy_by_hand():
    # Target classes {0, 1}; class 0: 2/3 right, class 1: 1/1; a prediction of the
    # source-private class 4 is wrong. Mean-class = (2/3 + 1)/2.
    y = np.array([0, 0, 0, 1])
    p = np.array([0, 4, 0, 1])
    assert m.partial_accuracy(y, p, (0, 1, 2)) == pytest.approx((2 / 3 + 1) / 2)


def test_open_set_scores_by_hand():
    # known {0, 1}, unknown 2. class 0: 1/2, class 1: 2/2, unknown: 1/3.
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    p = np.array([0, 2, 1, 1, 2, 0, 1])
    s = m.open_set_scores(y, p, (0, 1), 2)
    os_star, unk = 0.75, 1 / 3
    assert s["os_star"] == pytest.approx(os_star)
    assert s["unk"] == pytest.approx(unk)
    assert s["os"] == pytest.approx((0.5 + 1 + 1 / 3) / 3)
    assert s["hos"] == pytest.approx(2 * os_star * unk / (os_star + unk))
    assert m.h_score(y, p, (0, 1), 2) == pytest.approx(s["hos"])


def test_properties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    s = m.open_set_scores(y, y, (0, 1, 2), 3)
    assert all(v == 1.0 for v in s.values())  # perfect
    # Predicting only known classes: UNK = 0 so HOS = 0 however good OS* is.
    p = np.where(y == 3, 0, y)
    s = m.open_set_scores(y, p, (0, 1, 2), 3)
    assert s["unk"] == 0 and s["hos"] == 0 and s["os_star"] == 1
    assert s["os"] == pytest.approx(3 / 4)
    # Everything unknown: OS* = 0, UNK = 1, HOS = 0.
    s = m.open_set_scores(y, np.full_like(y, 3), (0, 1, 2), 3)
    assert s["os_star"] == 0 and s["unk"] == 1 and s["hos"] == 0
    # HOS lies between min and max of (OS*, UNK); invariant to permuting samples.
    p = rng.integers(0, 4, 200)
    s = m.open_set_scores(y, p, (0, 1, 2), 3)
    assert min(s["os_star"], s["unk"]) <= s["hos"] <= max(s["os_star"], s["unk"])
    perm = rng.permutation(200)
    assert m.open_set_scores(y[perm], p[perm], (0, 1, 2), 3) == s
    # Absent classes are left out; nothing -> NaN.
    assert m.partial_accuracy(np.array([0, 0]), np.array([0, 1]), (0, 5)) == 0.5
    assert math.isnan(m.partial_accuracy(np.array([], int), np.array([], int), (0,)))
    with pytest.raises(ValueError, match="same length"):
        m.partial_accuracy(np.array([0]), np.array([0, 1]), (0,))
    with pytest.raises(ValueError, match="unknown_label"):
        m.open_set_scores(y, p, (0, 1), 1)


def test_predict_labels_threshold():
    logits = np.log(np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25]]))
    np.testing.assert_array_equal(m.predict_labels(logits), [0, 0])
    # K+1 head: drop the unknown column, renormalise, threshold the known max.
    k1 = np.log(np.array([[0.1, 0.8, 0.1], [0.5, 0.2, 0.3]]))
    # row 0 known probs [0.1, 0.1]/0.2 -> max 0.5; row 1 [0.5, 0.3]/0.8 -> 0.625 (label 0)
    np.testing.assert_array_equal(m.predict_labels(k1, unknown_label=1, threshold=0.6), [1, 0])
    # Closed-set head (unknown label beyond the outputs).
    np.testing.assert_array_equal(m.predict_labels(logits, unknown_label=3, threshold=0.5), [0, 3])


def test_task_metrics_follow_the_setting():
    from tljax.data import (
        get_task,
        label_sets,  # noqa: F401  (registers the names)
    )

    t = get_task("open_set/digits->digits_m")
    y = t.target.test.y
    out = m.task_metrics(t, y, y)
    assert set(out) == {"accuracy", "os_star", "unk", "os", "hos"} and out["hos"] == 1
    t = get_task("partial/digits->digits_m")
    out = m.task_metrics(t, t.target.test.y, np.zeros_like(t.target.test.y))
    assert out["partial_accuracy"] == pytest.approx(1 / 5)
    t = get_task("universal/digits->digits_m")
    assert "h_score" in m.task_metrics(t, t.target.test.y, t.target.test.y)
    assert set(m.task_metrics(get_task("digits->digits_m"), y, y)) == {"accuracy"}

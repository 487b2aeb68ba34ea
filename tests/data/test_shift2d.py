"""Tests of the 2-D shift generator: each shift changes exactly its factor of p(x, y)."""

import numpy as np
import pytest

from tljax.data import shift2d
from tljax.data.tasks import get_task, task_names


def _task(shift, **options):
    return get_task(f"shift2d/{shift}", data_seed=0, **options)


def _class_stats(split, k):
    return np.stack([split.x[split.y == c].mean(0) for c in range(k)]), np.stack(
        [split.x[split.y == c].std(0) for c in range(k)]
    )


@pytest.mark.parametrize("shift", shift2d.SHIFTS)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_registered_shapes_and_reproducible(shift, k):
    assert f"shift2d/{shift}" in task_names()
    task = _task(shift, num_classes=k, n_train=300, n_test=400)
    task.validate()
    assert task.num_classes == k
    for dom in (task.source, task.target):
        assert dom.train.x.shape == (300, 2) and dom.test.x.shape == (400, 2)
        assert dom.train.x.dtype == np.float32 and dom.train.y.dtype == np.int32
        assert not dom.train.x.flags.writeable
        assert set(np.unique(dom.test.y)) == set(range(k))
    again = shift2d.shift2d_task(shift, data_seed=0, num_classes=k, n_train=300, n_test=400)
    np.testing.assert_array_equal(again.target.test.x, task.target.test.x)
    other = _task(shift, num_classes=k, n_train=300, n_test=400, **{})  # cached: same object
    assert other is task
    seed1 = get_task(f"shift2d/{shift}", data_seed=1, num_classes=k, n_train=300, n_test=400)
    assert not np.array_equal(seed1.source.train.x, task.source.train.x)
    assert not np.array_equal(task.source.train.x, task.source.test.x)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_covariate_shift_keeps_p_y_given_x_and_moves_p_x(k):
    task = _task("covariate", num_classes=k, n_train=4000, offset=2.0)
    for dom in (task.source, task.target):
        for split in (dom.train, dom.test):  # p(y|x) is the same function in both domains
            np.testing.assert_array_equal(split.y, shift2d.pinwheel_labels(split.x, k, 1.0))
    s, t = task.source.train.x, task.target.train.x
    np.testing.assert_allclose(s.mean(0), [0, 0], atol=0.08)
    np.testing.assert_allclose(t.mean(0), [2, 0], atol=0.08)  # p(x) moved by the offset
    np.testing.assert_allclose(t.std(0), s.std(0), atol=0.08)
    # With label noise, p(y|x) is still one function: the same flip rate in both domains.
    noisy = _task("covariate", num_classes=k, n_train=4000, label_noise=0.3)
    rates = [
        np.mean(d.train.y != shift2d.pinwheel_labels(d.train.x, k, 1.0))
        for d in (noisy.source, noisy.target)
    ]
    np.testing.assert_allclose(rates, 0.3 * (k - 1) / k, atol=0.03)


def test_pinwheel_is_a_nonlinear_partition():
    x = np.array([[0.01, 0.0], [0.0, 0.01], [-0.01, 0.0], [2.2, 0.0]])
    # twist 0: sectors of angle; twist 1 turns the arms by 1 rad per unit radius.
    np.testing.assert_array_equal(shift2d.pinwheel_labels(x[:3], 3, 0.0), [0, 0, 1])
    assert shift2d.pinwheel_labels(x[3:], 3, 1.0)[0] == 1


@pytest.mark.parametrize("k", [2, 3, 5])
def test_label_shift_changes_p_y_and_keeps_p_x_given_y(k):
    task = _task("label", num_classes=k, n_train=6000, imbalance=0.2)
    src, tgt = task.source.train, task.target.train
    np.testing.assert_array_equal(
        np.bincount(src.y, minlength=k), shift2d.class_counts(6000, np.ones(k))
    )
    priors = shift2d.target_priors(k, 0.2)
    np.testing.assert_array_equal(
        np.bincount(tgt.y, minlength=k), shift2d.class_counts(6000, priors)
    )
    assert priors[0] / priors[-1] == pytest.approx(5.0)
    (ms, ss), (mt, st) = _class_stats(src, k), _class_stats(tgt, k)
    np.testing.assert_allclose(mt, ms, atol=0.1)  # same class-conditionals
    np.testing.assert_allclose(ms, shift2d.class_means(k), atol=0.1)
    np.testing.assert_allclose(st, ss, atol=0.1)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_conditional_shift_moves_p_x_given_y_and_keeps_p_y(k):
    task = _task("conditional", num_classes=k, n_train=6000, angle=35.0)
    src, tgt = task.source.train, task.target.train
    np.testing.assert_array_equal(np.bincount(src.y, minlength=k), np.bincount(tgt.y, minlength=k))
    (ms, ss), (mt, st) = _class_stats(src, k), _class_stats(tgt, k)
    np.testing.assert_allclose(ms, shift2d.class_means(k), atol=0.1)
    np.testing.assert_allclose(mt, shift2d.class_means(k, 35.0), atol=0.1)
    moved = np.linalg.norm(mt - ms, axis=1)
    np.testing.assert_allclose(moved, 2 * shift2d.RADIUS * np.sin(np.radians(17.5)), atol=0.1)
    np.testing.assert_allclose(st, ss, atol=0.1)  # the spread stays; only the means move


def test_class_counts_are_exact():
    np.testing.assert_array_equal(shift2d.class_counts(10, np.ones(3)), [4, 3, 3])
    for n in (3, 7, 1001):
        assert shift2d.class_counts(n, shift2d.target_priors(4, 0.3)).sum() == n


def test_bad_options():
    with pytest.raises(ValueError, match="does not use"):
        _task("label", angle=10.0)
    with pytest.raises(TypeError, match="unexpected option"):
        _task("label", radius=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        _task("conditional", num_classes=1)
    with pytest.raises(ValueError, match="n_train"):
        _task("conditional", num_classes=3, n_train=2)
    with pytest.raises(ValueError, match="noise"):
        _task("label", noise=0.0)
    with pytest.raises(ValueError, match="label_noise"):
        _task("covariate", label_noise=1.5)
    with pytest.raises(ValueError, match="unknown shift"):
        shift2d.shift2d_task("prior")
    with pytest.raises(ValueError, match="data_seed"):
        shift2d.shift2d_task("label", data_seed=-1)

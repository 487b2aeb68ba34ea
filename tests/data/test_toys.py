"""Tests of the two-moons toy task."""

import numpy as np
import pytest

from tljax.data.toys import MOONS_CENTRE, rotate_points, two_moons, two_moons_task


def test_two_moons_shapes_and_reproducibility():
    x, y = two_moons(101, seed=0)
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y), [51, 50])
    np.testing.assert_array_equal(two_moons(101, seed=0)[0], x)
    assert not np.array_equal(two_moons(101, seed=1)[0], x)


def test_noiseless_points_lie_on_the_moons():
    x, y = two_moons(200, noise=0.0, seed=3)
    up, low = x[y == 0].astype(np.float64), x[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(up[:, 0], up[:, 1]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(1 - low[:, 0], 0.5 - low[:, 1]), 1.0, atol=1e-6)
    assert up[:, 1].min() >= 0 and low[:, 1].max() <= 0.5


def test_target_is_the_source_rotated_about_the_centre():
    task = two_moons_task(n_train=50, n_test=40, angle=30.0, seed=2)
    task.validate()
    c = complex(*MOONS_CENTRE)
    for src, tgt in ((task.source.train, task.target.train), (task.source.test, task.target.test)):
        z = (src.x[:, 0] + 1j * src.x[:, 1].astype(np.float64) - c) * np.exp(1j * np.pi / 6) + c
        np.testing.assert_allclose(tgt.x, np.stack([z.real, z.imag], 1), atol=1e-6)
        np.testing.assert_array_equal(tgt.y, src.y)
    assert not np.array_equal(task.source.train.x[:40], task.source.test.x)
    np.testing.assert_allclose(rotate_points(np.array([MOONS_CENTRE]), 77.0), [MOONS_CENTRE])


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        two_moons(0, seed=0)
    with pytest.raises(ValueError, match="noise"):
        two_moons(5, noise=-0.1, seed=0)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        rotate_points(np.zeros((3, 3)), 10.0)

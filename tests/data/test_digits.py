"""Tests of the UCI digits domain."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tljax.data.digits import load_uci_digits


def test_shapes_ranges_and_stratified_split():
    train, test = load_uci_digits()
    assert train.x.shape[1:] == (28, 28, 1) and train.x.dtype == np.float32
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.3 * 1797) <= 1
    assert train.y.dtype == np.int32 and set(np.unique(test.y)) == set(range(10))
    for s in (train, test):
        assert 0.0 <= s.x.min() and s.x.max() <= 1.0
    # Stratified: every class's test share is close to 30%.
    all_counts = np.bincount(np.concatenate([train.y, test.y]))
    np.testing.assert_allclose(np.bincount(test.y) / all_counts, 0.3, atol=0.02)


def test_original_size_keeps_the_pixels_and_split_is_seeded():
    train, test = load_uci_digits(image_size=8, split_seed=5)
    bunch = load_digits()
    x = np.concatenate([train.x, test.x])[..., 0]
    y = np.concatenate([train.y, test.y])
    # Match rows by content: sort both by label, then pixels.
    order = np.lexsort(np.vstack([x.reshape(len(x), -1).T, y]))
    ref = np.lexsort(np.vstack([bunch.images.reshape(1797, -1).T, bunch.target]))
    np.testing.assert_array_equal(x[order], (bunch.images[ref] / 16).astype(np.float32))
    np.testing.assert_array_equal(y[order], bunch.target[ref])
    again = load_uci_digits(image_size=8, split_seed=5)[1]
    np.testing.assert_array_equal(again.x, test.x)
    assert not np.array_equal(load_uci_digits(image_size=8, split_seed=6)[1].y, test.y)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        load_uci_digits(image_size=0)
    with pytest.raises(ValueError, match="test_fraction"):
        load_uci_digits(test_fraction=1.0)

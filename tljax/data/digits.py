"""The UCI handwritten digits (scikit-learn's ``load_digits``) as an image domain.

1,797 real 8x8 digit images (values 0..16, 10 classes) ship inside scikit-learn, so this
domain is available offline. They are scaled to ``[0, 1]`` and resized to
``image_size x image_size`` with antialiased bilinear interpolation, giving the
MNIST-like layout ``(n, s, s, 1)`` float32.
"""

from __future__ import annotations

import numpy as np

from tljax.data.core import Split
from tljax.data.shifts import resize


def load_uci_digits(
    *, image_size: int = 28, test_fraction: float = 0.3, split_seed: int = 0
) -> tuple[Split, Split]:
    """Loads the UCI digits with a stratified, seeded train/test split.

    Args:
      image_size: side length of the output images (8 keeps the original pixels).
      test_fraction: fraction of each class that goes to the test split, in ``(0, 1)``.
      split_seed: seed of the split; the same seed gives the same split.

    Returns:
      ``(train, test)`` splits: images float32 ``(n, image_size, image_size, 1)`` in
      ``[0, 1]``, labels int32 in ``0..9``; examples keep the dataset's order.

    Raises:
      ValueError: if ``image_size < 1`` or ``test_fraction`` is not in ``(0, 1)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}.")
    bunch = load_digits()
    images = bunch.images.astype(np.float32)[..., None] / np.float32(16.0)
    labels = bunch.target.astype(np.int32)
    if image_size != images.shape[1]:
        images = resize(images, int(image_size))
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=test_fraction,
        stratify=labels,
        random_state=split_seed,
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return (
        Split(images[train_idx], labels[train_idx]),
        Split(images[test_idx], labels[test_idx]),
    )

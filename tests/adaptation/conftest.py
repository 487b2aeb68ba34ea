"""A tiny BatchNorm network and a shifted stream for the test-time adaptation tests."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from tljax import methods
from tljax.adaptation import Context
from tljax.models import build_classifier
from tljax.train import build_net


def tiny_context(num_classes=3, shape=(8, 8, 2), seed=0, bottleneck_dim=6) -> Context:
    """DTN (BatchNorm after every layer, no dropout) + a BatchNorm bottleneck; its running
    statistics are moved away from (0, 1) so batch and running statistics differ."""
    model = build_classifier(
        "dtn",
        shape,
        num_classes,
        rngs=nnx.Rngs(seed),
        bottleneck_dim=bottleneck_dim,
        widths=(4, 4, 4),
        feature_dim=8,
        conv_dropout=(0.0, 0.0, 0.0),
        dropout=0.0,
    )
    graphs, params, rest = build_net(
        model, methods.get("source_only"), seed=seed, num_classes=num_classes
    )
    rng = np.random.default_rng(seed + 1)

    def move(path, leaf):
        name = jax.tree_util.keystr(path)
        if "mean" in name:
            return leaf + rng.normal(0, 0.3, leaf.shape).astype(leaf.dtype)
        if "var" in name:
            return leaf * rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
        return leaf

    rest = jax.tree_util.tree_map_with_path(move, rest)
    return Context(graphs, params, rest, num_classes)


@pytest.fixture(scope="module")
def ctx():
    return tiny_context()


@pytest.fixture(scope="module")
def stream():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(40, 8, 8, 2)) * 1.5 + 0.7).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.int32)
    return x, y

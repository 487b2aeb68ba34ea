"""Fixtures shared by the loss tests: dtype parametrisation with 64-bit mode scoped to a test."""

from __future__ import annotations

import jax
import numpy as np
import pytest


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    """Runs the test once in float32 and once in float64 (jax x64 enabled only for the latter)."""
    with jax.enable_x64(request.param is np.float64):
        yield request.param


@pytest.fixture
def x64():
    """Enables jax float64 for the duration of a test (gradient checks against finite
    differences)."""
    with jax.enable_x64(True):
        yield

"""Fixtures shared by all tests, and XLA's deterministic GPU ops for the whole session.

**Deterministic GPU ops.** Several tests assert exactness claims (the same step twice gives
the same bits, a resumed run equals the uninterrupted one, a label that only the probe
sees changes only the probe, ...) that tljax makes in deterministic mode
(``config.train.deterministic``). On a CPU they hold anyway within one process: one
program on one thread pool is run-to-run deterministic. On a GPU they need XLA's
deterministic ops (no atomics in reductions and scatters, no autotuning, so every
compilation of a program picks the same kernels); without them 6 such tests failed on an
H200 (``shared/GPU.md``). XLA reads ``XLA_FLAGS`` once, when the first backend starts,
so they are set here: pytest imports this file before any test module and before any
JAX computation. :data:`tljax.xla_env.DETERMINISTIC_GPU_FLAGS` are added unless
``XLA_FLAGS`` already names them (``--xla_gpu_deterministic_ops=false`` keeps the
default, e.g. to see which tests depend on it). The CPU-only jaxlib accepts the flags
and ignores them (``tests/test_deterministic.py`` checks that XLA does not abort on
them). Subprocesses that tests start inherit them.

The other half of deterministic mode, a fixed XLA:CPU thread pool (``PJRT_NPROC``), is not
set for the session: within one process the pool is fixed anyway, and one thread would
slow the suite. ``tests/test_deterministic.py`` tests it in subprocesses.

**Precision.** GPUs run float32 matmuls and convolutions in TF32 (or bf16 passes) at JAX's
default precision: ~1e-3 relative error, so parity tests against float64, NumPy or torch
references at 1e-4..1e-5 fail there. Such tests use the :func:`highest_precision` fixture
(``@pytest.mark.usefixtures("highest_precision")``); on a CPU it changes nothing.
"""

from __future__ import annotations

import os

import jax
import pytest

from tljax import xla_env


def _add_deterministic_gpu_flags() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    names = {f.split("=", 1)[0] for f in flags.split()}
    add = [f for f in xla_env.DETERMINISTIC_GPU_FLAGS if f.split("=", 1)[0] not in names]
    if add:
        os.environ["XLA_FLAGS"] = " ".join([flags, *add]).strip()


_add_deterministic_gpu_flags()


@pytest.fixture
def highest_precision():
    """Float32 matmuls and convolutions in full float32 for the test (steps traced inside
    it; a no-op on CPUs): for comparisons with float64/NumPy/torch references at tight
    tolerances, and between two programs that must agree to float rounding."""
    with jax.default_matmul_precision("highest"):
        yield

"""tljax's XLA defaults: applied on import before the backend starts, never over the user's
own setting, and they reach the compiled program (no YNN fusion in a convolution's
gradient on the CPU)."""

import os
import subprocess
import sys

import jaxlib.version
import pytest

from tljax import xla_env

PROBE = r"""
import os, jax, jax.numpy as jnp
import tljax
def f(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
x, w = jnp.ones((8, 28, 28, 3)), jnp.ones((5, 5, 3, 32))  # LeNet conv1
text = jax.jit(jax.grad(f, argnums=1)).lower(x, w).compile().as_text()
print(tljax.XLA_ENV, "|", os.environ.get("XLA_FLAGS", ""), "|", "ynn_fusion" in text)
"""

_tested = pytest.mark.skipif(
    not jaxlib.version.__version__.startswith(xla_env.TESTED_JAXLIB),
    reason=f"jaxlib {jaxlib.version.__version__} is not one tljax sets the flag for",
)


def _probe(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TLJAX_CPU_YNN")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, "JAX_PLATFORMS": "cpu", **env},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    state, flags, ynn = (s.strip() for s in out.stdout.strip().splitlines()[-1].split("|"))
    return state, flags, ynn == "True"


@_tested
def test_import_applies_the_flag_and_the_program_has_no_ynn_fusion():
    state, flags, ynn = _probe()
    assert state == "applied" and flags == xla_env.YNN_FLAG and not ynn


@_tested
def test_opt_out_keeps_xla_default():
    state, flags, ynn = _probe(TLJAX_CPU_YNN="1")
    assert state == "opted out" and flags == "" and ynn  # XLA's default fuses into YNN


@_tested
def test_user_flags_are_kept():
    # any value of the flag is the user's: tljax leaves XLA_FLAGS untouched
    mine = "--xla_cpu_experimental_ynn_fusion_type=+some_type"
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_enable_fast_math=false " + mine)
    saved = os.environ.copy()
    try:
        os.environ.clear()
        os.environ.update(env)
        assert xla_env.apply_cpu_defaults() == "already set"
        assert os.environ["XLA_FLAGS"] == env["XLA_FLAGS"]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_emulated_multi_device_cpu_keeps_xla_default(monkeypatch):
    monkeypatch.delenv("TLJAX_CPU_YNN", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    assert xla_env.apply_cpu_defaults() == "emulated multi-device CPU"
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"


def test_no_change_once_a_backend_runs(monkeypatch):
    import jax

    jax.devices()  # this test process's backend is running
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("TLJAX_CPU_YNN", raising=False)
    monkeypatch.setattr(xla_env, "TESTED_JAXLIB", (jaxlib.version.__version__,))
    assert xla_env.apply_cpu_defaults() == "backend already initialized"
    assert "XLA_FLAGS" not in os.environ


def test_untested_jaxlib_is_left_alone(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("TLJAX_CPU_YNN", raising=False)
    monkeypatch.setattr(xla_env, "TESTED_JAXLIB", ("9.9.",))
    assert xla_env.apply_cpu_defaults().startswith("untested jaxlib ")
    assert "XLA_FLAGS" not in os.environ

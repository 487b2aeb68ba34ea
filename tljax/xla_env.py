"""XLA settings tljax applies before the first computation: faster convolutions on the CPU.

XLA:CPU in jaxlib 0.10 hands convolutions and dots to its YNN library fusions by default.
For the small conv nets of domain adaptation (LeNet, DTN) these run far slower than XLA's
own kernels on a 2-core CPU: the LeNet DANN step ran at 42.7 steps/s with them and 93.2
without at 32 images per domain, and 4.8 vs 16.7 at 128 (``docs/benchmarks.md``, measured
side by side with PyTorch). :func:`apply_cpu_defaults`, run when ``tljax`` is imported,
therefore adds ``--xla_cpu_experimental_ynn_fusion_type=`` (no YNN fusions) to
``XLA_FLAGS`` when all of these hold:

* the jaxlib version is one where the flag was measured (:data:`TESTED_JAXLIB`): XLA
  aborts on a flag it does not know, so another version is left alone;
* no JAX backend has started yet (XLA reads ``XLA_FLAGS`` once, when the first backend
  starts; import tljax before running anything in JAX for the setting to count);
* ``XLA_FLAGS`` does not already name the flag (yours wins);
* ``XLA_FLAGS`` does not emulate several CPU devices
  (``--xla_force_host_platform_device_count`` above 1): in that SPMD setting the
  no-YNN program's first DANN update on 8 emulated devices differed from the 1-device one
  at the percent level in the discriminator's hidden layers (with YNN: at float
  rounding), which is not understood, so XLA's default is kept there (multi-process
  runs, one CPU device each, match 1 process to 1e-5 with the flag:
  ``tests/test_distributed.py``);
* ``TLJAX_CPU_YNN`` is not set to ``1`` (set it to keep XLA's default).

The flag only concerns the CPU backend; GPU and TPU programs are unaffected.
"""

from __future__ import annotations

import os
import re

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
TESTED_JAXLIB = ("0.10.",)  # version prefixes where the flag exists and was measured


def apply_cpu_defaults() -> str:
    """Adds :data:`YNN_FLAG` to ``XLA_FLAGS`` where safe (see the module docstring).

    Returns:
      What was done: ``"applied"``, or why not (``"opted out"``, ``"already set"``,
      ``"emulated multi-device CPU"``, ``"untested jaxlib <version>"``,
      ``"backend already initialized"``).
    """
    if os.environ.get("TLJAX_CPU_YNN") == "1":
        return "opted out"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return "already set"
    emulated = re.findall(r"--xla_force_host_platform_device_count=(\d+)", flags)
    if emulated and int(emulated[-1]) > 1:
        return "emulated multi-device CPU"
    try:
        import jaxlib.version

        version = jaxlib.version.__version__
    except ImportError:  # pragma: no cover - jax without jaxlib cannot run anyway
        return "untested jaxlib (not found)"
    if not version.startswith(TESTED_JAXLIB):
        return f"untested jaxlib {version}"
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return "backend already initialized"
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}".strip()
    return "applied"

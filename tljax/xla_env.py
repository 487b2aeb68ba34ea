"""XLA settings tljax applies before the first computation: faster CPU convolutions, and
deterministic mode.

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

Deterministic mode (``config.train.deterministic=True``, :func:`apply_deterministic`)
makes a run bit-reproducible: on GPUs XLA's deterministic ops (no atomics, no
autotuning), on CPUs a fixed intra-op thread pool (``PJRT_NPROC=1``). XLA:CPU's dots and
convolutions split their sums by the pool size, so without it the same seed gives other
bits on 1 and on 2 cores (the LeNet DANN step after 100 steps, jaxlib 0.10.2; no XLA flag
changes that: ``--xla_cpu_multi_thread_eigen=false``, ``--xla_cpu_use_xnnpack=false``,
``--xla_cpu_use_onednn=false``, ``--xla_cpu_parallel_codegen_split_count=1`` and the
XNN/oneDNN fusion types all left the 1- and 2-core bits different; ``PJRT_NPROC`` pins
them, with YNN fusions on or off). The mode also sets the process's matmul precision to
``"highest"``.
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


# ---------------------------------------------------------------------------------------
# Deterministic mode (``config.train.deterministic``)

#: XLA:GPU flags of deterministic mode: deterministic reductions and scatters (no atomics)
#: and no autotuning, so a program picks the same kernels in every process. Both exist in
#: every jaxlib tljax supports (>= 0.10; the CPU-only 0.10.2 accepts them too).
DETERMINISTIC_GPU_FLAGS = (
    "--xla_gpu_deterministic_ops=true",
    "--xla_gpu_exclude_nondeterministic_ops=true",
)
#: XLA:CPU sizes its intra-op thread pool from this variable (else the usable cores), and
#: its Eigen dots and convolutions block their reductions by that size: the same program
#: gives other bits on 1 and 2 threads. Deterministic mode fixes the size.
CPU_THREADS_VAR = "PJRT_NPROC"
#: The pool size deterministic mode sets unless ``PJRT_NPROC`` is already set: 1, the one
#: size that is the same on every machine and never oversubscribes a core.
DETERMINISTIC_CPU_THREADS = "1"


def _flag_names(flags: str) -> set[str]:
    return {f.split("=", 1)[0] for f in flags.split()}


def deterministic_missing(environ=None, platform: str | None = None) -> dict[str, str]:
    """What deterministic mode still has to set: ``{variable: new value}``.

    Args:
      environ: the environment to check (default ``os.environ``).
      platform: only what this platform needs (``"cpu"``, ``"gpu"``); default both, as
        before a backend starts nobody knows which one a program will run on.
    """
    environ = os.environ if environ is None else environ
    out = {}
    if platform in (None, "gpu", "cuda", "rocm"):
        flags = environ.get("XLA_FLAGS", "")
        have = _flag_names(flags)
        add = [f for f in DETERMINISTIC_GPU_FLAGS if f.split("=", 1)[0] not in have]
        if add:
            out["XLA_FLAGS"] = " ".join([flags, *add]).strip()
    if platform in (None, "cpu") and not environ.get(CPU_THREADS_VAR):
        out[CPU_THREADS_VAR] = DETERMINISTIC_CPU_THREADS
    return out


def apply_deterministic() -> str:
    """Makes this process's XLA programs bit-reproducible (``config.train.deterministic``).

    Adds :data:`DETERMINISTIC_GPU_FLAGS` to ``XLA_FLAGS`` and sets ``PJRT_NPROC`` to
    :data:`DETERMINISTIC_CPU_THREADS`; a value the user already set is kept (an explicit
    ``--xla_gpu_deterministic_ops=false`` too: theirs wins, as for the YNN flag). XLA reads
    both once, when the first backend starts, so this must run before any JAX computation
    (``tljax.loop.train_and_evaluate`` and ``build`` call it first thing). The same
    program, inputs and pool size then give the same bits run after run, on 1 core or 16
    (on the same kind of CPU: another instruction set blocks sums differently).

    It also sets ``jax_default_matmul_precision`` to ``"highest"`` for the process: float32
    matmuls and convolutions in full float32 on every backend (GPUs otherwise take TF32 or
    bf16 passes; on CPUs float32 already is full precision). Like XLA's flags this is
    per process, so it covers every step built in it (``tljax.multiseed``, the bench).

    Returns:
      ``"applied"``, or ``"already set"`` when the environment (or, once a backend runs,
      the part its platform needs) already was deterministic.

    Raises:
      RuntimeError: a JAX backend already started without these settings.
    """
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        missing = deterministic_missing(platform=jax.default_backend())
        if missing:
            raise RuntimeError(
                "config.train.deterministic=True, but a JAX backend already started "
                f"without the settings it needs ({missing}); XLA reads them only at "
                "start-up. Set them in the environment before starting Python ("
                + " ".join(f"{k}={v!r}" for k, v in missing.items())
                + "), or start the run before any JAX computation in this process."
            )
        state = "already set"
    else:
        missing = deterministic_missing()
        os.environ.update(missing)
        state = "applied" if missing else "already set"
    jax.config.update("jax_default_matmul_precision", "highest")
    return state

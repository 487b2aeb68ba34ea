"""tljax: transfer learning and domain adaptation in JAX/Flax.

Importing tljax applies its XLA defaults before any backend starts (faster CPU
convolutions; see :mod:`tljax.xla_env`); ``XLA_ENV`` says whether they took effect.
"""

from tljax import xla_env as _xla_env

XLA_ENV = _xla_env.apply_cpu_defaults()

r"""Runs one experiment.

    python -m experiments.run --config=configs/dann_digits.py --workdir=runs/dann \
        --config.seed=1 --config.train.steps=500

Re-running with the same workdir resumes from its last checkpoint. A config file may
take an argument after a colon (``configs/x.py:source=amazon,target=webcam``) if its
``get_config`` accepts one.

Data-parallel over several processes (hosts): start one copy per process with
``--coordinator_address=host0:port --num_processes=P --process_id=i`` (or
``$JAX_COORDINATOR_ADDRESS``, ``$JAX_NUM_PROCESSES``, ``$JAX_PROCESS_ID``; under SLURM's
``srun`` nothing is needed). ``data.batch_size`` stays the global batch; see
docs/scaling.md.
"""

from __future__ import annotations

import json
import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from tljax.checkpoint import CheckpointError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs: host:port of process 0."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process runs: processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's id.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    from tljax import distributed
    from tljax.train import train_and_evaluate

    try:
        # Before any JAX computation; a no-op for a single-process run.
        distributed.maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (ValueError, FileNotFoundError, FloatingPointError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main)

#!/usr/bin/env bash
# The main job: source only vs DANN on UCI digits -> digits-M, 3 seeds, offline.
# Sets up .venv if missing, trains 6 runs, prints the table (also in runs/main/results.md).
# Deterministic mode (a 1-thread XLA pool): the same per-seed numbers on any machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m experiments.sweep \
  --configs=configs/source_only_digits_m.py,configs/dann_digits_m.py \
  --seeds=0,1,2 --set=train.deterministic=True --workdir="${WORKDIR:-runs/main}" \
  --noholdout "$@"  # all of source train, as the README's table was measured

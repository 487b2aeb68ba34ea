#!/usr/bin/env bash
# The offline benchmark suite: every adaptation method (15) on two-moons, UCI digits ->
# digits-M and Fashion-MNIST -> Fashion-M, 3 seeds each, then the report (tables under
# every selection rule, learning curves, t-SNE, proxy A-distance) in $WORKDIR/report.
#   bash experiments/suite.sh            # WORKDIR=runs/suite, resumable
#   TASKS="moons digits_m" bash experiments/suite.sh
#   DETERMINISTIC=0 bash experiments/suite.sh   # XLA's default thread pool (not bit-reproducible)
# Settings per cell: configs/suite.py. Fashion-MNIST comes from the Debian package
# dataset-fashion-mnist (apt-get install dataset-fashion-mnist); without it the
# fashion_m cells fail with a message saying so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
WORKDIR="${WORKDIR:-runs/suite}"
SEEDS="${SEEDS:-0,1,2}"
TASKS="${TASKS:-moons digits_m fashion_m}"
PARALLEL="${PARALLEL:-2}"
# Deterministic mode (train.deterministic, README "Reproducibility") by default: the same
# numbers run after run and on machines with other core counts.
DETERMINISTIC="${DETERMINISTIC:-1}"
case "$DETERMINISTIC" in
  1) det=(--set=train.deterministic=True) ;;
  0) det=() ;;
  *) echo "DETERMINISTIC must be 1 or 0, got '$DETERMINISTIC'" >&2; exit 2 ;;
esac
METHODS=$(python -c "from configs import suite; print(' '.join(suite.METHODS))")
start=$(date +%s)
for task in $TASKS; do
  args=()
  for m in $METHODS; do args+=("--config=configs/suite.py:$m,$task"); done
  if [ "$task" = moons ]; then
    mode=(--vmap)  # small MLP: the seeds train as one vmapped program
  else
    mode=(--parallel="$PARALLEL")
  fi
  t0=$(date +%s)
  python -m experiments.sweep "${args[@]}" --seeds="$SEEDS" --workdir="$WORKDIR" "${mode[@]}" \
    "${det[@]}"
  echo "[suite] $task: $(( $(date +%s) - t0 )) s" >&2
done
python -m experiments.report --workdir="$WORKDIR"
echo "[suite] total: $(( $(date +%s) - start )) s; report: $WORKDIR/report/report.md" >&2

#!/usr/bin/env bash
# Runs the whole test suite, setting up .venv first if needed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../experiments/setup_env.sh"
exec python -m pytest -n 2 --dist load "$@"

#!/usr/bin/env bash
# The test command (CI runs it): environment bootstrap, unit tests, then the notebooks under nbval.
#   ./run_tests.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
export MPLBACKEND=Agg TASE_PROGRESS=log TASE_PROFILE=smoke
# Everything the tests and notebooks write goes to a scratch folder, never into the checkout.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export TASE_RESULTS="$SCRATCH/results" TASE_FIGURES="$SCRATCH/figures" TASE_OUTPUTS="$SCRATCH/outputs"
export TASE_NOTEBOOK_WORKSPACE="$SCRATCH/suite"
"$PY" -m pytest tests -q -p no:cacheprovider "$@"
# The notebooks once more as a JupyterLab user runs them (nbval), reusing the notebook tests' runs.
TASE_RESULTS="$SCRATCH/suite/results" TASE_FIGURES="$SCRATCH/suite/figures" \
    "$PY" -m pytest --nbval-lax notebooks -q -p no:cacheprovider

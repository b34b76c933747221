#!/usr/bin/env bash
# Wall time of the notebook suite: ./run_all.sh from scratch, per notebook and in total.
#   benchmarks/suite.sh [run_all.sh options]          (default: --profile quick)
# Results, figures and executed notebooks go to a temporary folder removed at the end (KEEP=1
# keeps it), so nothing is reused from results/ and the checkout is untouched; datasets are read
# from TASE_DATA as usual (a download is not timed as training, but it is in the total).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 0 ] && set -- --profile quick
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tase-suite.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "[suite] keeping $SCRATCH"
else
    trap 'rm -rf "$SCRATCH"' EXIT
fi
export TASE_RESULTS="$SCRATCH/results" TASE_FIGURES="$SCRATCH/figures"
export TASE_OUTPUTS="$SCRATCH/outputs"
LOG="$SCRATCH/run_all.log"

echo "[suite] $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "[suite] ./run_all.sh $*"
START=$(date +%s)
STATUS=0
./run_all.sh "$@" 2>&1 | tee "$LOG" || STATUS=$?
WALL=$(( $(date +%s) - START ))

echo
echo "[suite] wall time per notebook"
sed -n 's/^\[run_all\] \([0-9][0-9]_[^ ]*\) done in \([0-9]*\) s$/\1 \2/p' "$LOG" |
    awk '{ printf "  %-30s %7d s\n", $1, $2; sum += $2 }
         END { printf "  %-30s %7d s\n", "sum of notebooks", sum }'
NOTEBOOKS=$(sed -n 's/^\[run_all\] all notebooks done in \([0-9]*\) s$/\1/p' "$LOG")
echo "  $(printf '%-30s %7d s' 'run_all.sh (notebooks)' "${NOTEBOOKS:-0}")"
echo "  $(printf '%-30s %7d s' 'total (with environment check)' "$WALL")"
echo "[suite] load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$STATUS" -ne 0 ]; then
    echo "[suite] FAILED: run_all.sh exited with $STATUS; the times above are the notebooks" \
        "that finished, and the total is not the suite's" >&2
    exit "$STATUS"
fi

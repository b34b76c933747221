#!/usr/bin/env bash
# The main job: run every notebook in order with papermill.
#   ./run_all.sh [--profile smoke|quick|paper] [--dataset NAME] [--only NN[,NN]]
# Executed notebooks go to outputs/<profile>/notebooks/, logs to outputs/<profile>/logs/.
set -euo pipefail
cd "$(dirname "$0")"

PROFILE=quick
DATASET=""
ONLY=""
usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) PROFILE="$2"; shift 2 ;;
        --dataset) DATASET="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run_all.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ ! -d "params/$PROFILE" ]; then
    echo "run_all.sh: unknown profile '$PROFILE' (valid: $(ls params | tr '\n' ' '))" >&2
    exit 2
fi

source scripts/bootstrap.sh
export TASE_PROGRESS="${TASE_PROGRESS:-log}"
export MPLBACKEND=Agg

OUT="${TASE_OUTPUTS:-outputs}/$PROFILE"
mkdir -p "$OUT/notebooks" "$OUT/logs"
ARGS=(-k python3 -p profile "$PROFILE")
[ -n "$DATASET" ] && ARGS+=(-p dataset "$DATASET")

START=$(date +%s)
for nb in notebooks/[0-9][0-9]_*.ipynb; do
    name=$(basename "$nb" .ipynb)
    num=${name:0:2}
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$num,"* ]]; then continue; fi
    t0=$(date +%s)
    echo "[run_all] $name (profile $PROFILE${DATASET:+, dataset $DATASET})"
    if ! "$PY" -m papermill "$nb" "$OUT/notebooks/$name.ipynb" "${ARGS[@]}" --cwd notebooks \
            --log-output > "$OUT/logs/$name.log" 2>&1; then
        echo "[run_all] FAILED: $name" >&2
        echo "[run_all]   partial output: $OUT/notebooks/$name.ipynb" >&2
        echo "[run_all]   log:            $OUT/logs/$name.log" >&2
        tail -n 20 "$OUT/logs/$name.log" >&2
        exit 1
    fi
    echo "[run_all] $name done in $(( $(date +%s) - t0 )) s"
done
echo "[run_all] all notebooks done in $(( $(date +%s) - START )) s"
echo "[run_all] executed notebooks: $OUT/notebooks/"
echo "[run_all] results:            $("$PY" -c 'import tase.paths as p; print(p.results_dir())')/"
echo "[run_all] figures:            $("$PY" -c 'import tase.paths as p; print(p.figures_dir())')/"

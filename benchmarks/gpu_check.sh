#!/usr/bin/env bash
# The GPU check: about 3 minutes (stage limits 90 + 200 + 60 s) on one CUDA device with PyTorch:
#   1. the unit tests marked cuda;
#   2. the training step (benchmarks/train_step.py) at ResNet-18, batch 512: fp32 and
#      bf16 + channels_last, then the latter under torch.compile; SimCLR, TASE, and SimCLR with
#      its views given (the model alone);
#   3. the augmentation (benchmarks/augment.py): ours on the GPU against the peers' PIL pipeline
#      in a DataLoader with 16 workers;
#   4. the projected wall time of the paper's CIFAR-10-LT run, 2000 epochs of 11,165 images:
#        ours  = 2000 × 11,165 / (images/s of our full step: augmentation on the GPU, then the
#                model; its fastest variant)
#        peers = 2000 × max(11,165 / (images/s of their loader, 16 workers),
#                           11,165 / (images/s of the same model step with its views given))
#      i.e. the peers' loader overlaps the GPU perfectly and their model step is credited with
#      our fastest variant, so the gap is the input pipeline alone. Both leave out clustering
#      (TASE, every 5 epochs; benchmarks/epoch.py), evaluation and checkpoints.
#
#   benchmarks/gpu_check.sh              log and JSON in $GPU_CHECK_DIR (default outputs/gpu_check)
# Environment: PY (default python3), DEVICE (cuda), BATCH (512), WORKERS (16); DEVICE=cpu
# BATCH=32 WORKERS=2 runs the same wiring on a CPU in a few minutes (compile off, tests skipped).
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's tase, installed or not

PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-512}
WORKERS=${WORKERS:-16}
EPOCHS=2000
IMAGES=11165
DIR=${GPU_CHECK_DIR:-${TASE_OUTPUTS:-outputs}/gpu_check}
mkdir -p "$DIR"
LOG="$DIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
say() { echo "[gpu_check] $*"; }
FAILED=()

say "$(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); log $LOG"
IMPORTS="import torch, torchvision, numpy, scipy, sklearn, threadpoolctl, pandas, yaml, PIL, pytest, tqdm, tase"
if ! "$PY" -c "$IMPORTS" 2>/dev/null; then
    say "dependencies missing: pip install -e .[dev] (needs the package index)"
    "$PY" -m pip install -q -e ".[dev]" || { say "FAILED: install; see above"; exit 1; }
fi
"$PY" - "$DEVICE" <<'EOF'
import os, platform, sys, torch
device = sys.argv[1]
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"[gpu_check] python {platform.python_version()}, torch {torch.__version__} "
      f"(CUDA {torch.version.cuda}), {name}, {os.cpu_count()} CPU cores")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("[gpu_check] FAILED: torch sees no CUDA device (DEVICE=cpu for a dry run)")
EOF
if [ "${DEVICE%%:*}" = cuda ]; then COMPILE=--compile; else COMPILE=--no-compile; fi

stage() {  # stage NAME SECONDS LOGFILE COMMAND...: time-limited; a failure is recorded, not fatal
    local name=$1 limit=$2 out="$DIR/$3" t0=$SECONDS
    shift 3
    say "== $name"
    if timeout "$limit" "$@" 2>&1 | tee "$out"; then
        say "-- $name: ok in $(( SECONDS - t0 )) s"
    else
        say "-- $name: FAILED (limit $limit s) after $(( SECONDS - t0 )) s"
        FAILED+=("$name")
    fi
}

mapfile -t CUDA_TESTS < <(grep -l 'pytest.mark.cuda' tests/test_*.py)
stage "CUDA unit tests (${CUDA_TESTS[*]})" 90 tests.log \
    "$PY" -m pytest -m cuda -q -p no:cacheprovider "${CUDA_TESTS[@]}"
stage "training step, resnet18, batch $BATCH" 200 train_step.log \
    "$PY" benchmarks/train_step.py --device "$DEVICE" --archs resnet18 --batch "$BATCH" \
    --variants fp32,bf16+cl "$COMPILE" --model-only --json "$DIR/train_step.json"
stage "augmentation, batch $BATCH, peers with $WORKERS workers" 60 augment.log \
    "$PY" benchmarks/augment.py --device "$DEVICE" --batch "$BATCH" --workers "$WORKERS" \
    --repeats 5

say "== projection: $EPOCHS epochs × $IMAGES images"
"$PY" - "$DIR" "$EPOCHS" "$IMAGES" "$WORKERS" <<'EOF' || FAILED+=("projection")
import json, re, sys
from pathlib import Path

folder, epochs, images, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
records = json.loads((folder / "train_step.json").read_text())["records"]
rate = {(r["variant"], r["method"]): r["median"] for r in records if r["arch"] != "loss"}
log = (folder / "augment.log").read_text()
loader = float(re.search(r"peers \(PIL.*?median\s+([\d,]+) images/s", log)[1].replace(",", ""))
ours_augment = float(re.search(r"ours \(tase.*?median\s+([\d,]+) images/s", log)[1].replace(",", ""))

def hours(per_epoch_s):
    return f"{epochs * per_epoch_s / 3600:6.2f} h ({per_epoch_s:.3f} s/epoch)"

variants = sorted({v for v, _ in rate})
best = max(variants, key=lambda v: rate[(v, "TASE")])
print(f"[gpu_check] our augmentation alone {ours_augment:,.0f} images/s; peers' loader "
      f"({workers} workers) {loader:,.0f} images/s")
for v in variants:
    print(f"[gpu_check] step images/s, {v:<16} SimCLR {rate[(v, 'SimCLR')]:>8,.0f}  TASE "
          f"{rate[(v, 'TASE')]:>8,.0f}  SimCLR views given {rate[(v, 'SimCLR, views given')]:>8,.0f}")
model = images / rate[(best, "SimCLR, views given")]
print(f"[gpu_check] PROJECTION ({epochs} epochs, {images} images, variant {best}):")
print(f"[gpu_check]   ours,  TASE   {hours(images / rate[(best, 'TASE')])}")
print(f"[gpu_check]   ours,  SimCLR {hours(images / rate[(best, 'SimCLR')])}")
peers = max(images / loader, model)
bound = "loader" if images / loader > model else "model"
print(f"[gpu_check]   peers, SimCLR {hours(peers)}  [{bound}-bound: loader "
      f"{images / loader:.3f} s, model {model:.3f} s per epoch]")
print(f"[gpu_check]   peers / ours (TASE): {peers / (images / rate[(best, 'TASE')]):.2f}×")
EOF

if [ ${#FAILED[@]} -eq 0 ]; then
    say "ALL OK in $SECONDS s; log $LOG"
else
    say "FAILED: ${FAILED[*]} ($SECONDS s); log $LOG"
    exit 1
fi

#!/usr/bin/env bash
# One prepared run on a lent GPU machine (one GPU, 16 CPU cores), everything at once:
#   1. the paper tables that train (benchmarks/paper_tables.py --device cuda): Faster R-CNN's
#      anchors, lambda and test-time tables in one process, Fast R-CNN's multi-task and SVD
#      tables in another (each writes its own JSON; merge them with --reuse runs or by hand);
#   2. every device-aware test on CUDA (the `device` fixture's cuda cases and the resume test).
# Selective-search boxes come from build/cache (carried): OpenCV's contrib module may be absent
# there. The trained Fast R-CNN models come back too, for the R-CNN table (run on a CPU).
#     bash benchmarks/device_run.sh [steps] [seconds]
set -u
OUT=${OUT:-build/device}
STEPS=${1:-600}
LIMIT=${2:-240}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi -L; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"; } > "$OUT/gpu.txt" 2>&1

timeout "$LIMIT" python3 benchmarks/paper_tables.py --device cuda --steps "$STEPS" --workers 5 \
  --threads 2 --tables anchors lambda test_time --out "$OUT/tables_faster.json" > "$OUT/tables_faster.log" 2>&1 &
timeout "$LIMIT" python3 benchmarks/paper_tables.py --device cuda --steps "$STEPS" --workers 2 \
  --threads 1 --tables multitask svd --out "$OUT/tables_fast.json" > "$OUT/tables_fast.log" 2>&1 &
OMP_NUM_THREADS=2 timeout "$LIMIT" python3 -m pytest -q -p no:cacheprovider -k cuda \
  tests/test_boxes.py tests/test_anchors.py tests/test_matching.py tests/test_roi_ops.py \
  tests/test_losses.py tests/test_models.py tests/test_training.py tests/test_proposals.py \
  tests/test_evaluation.py tests/test_checkpoint_safety.py > "$OUT/cuda_tests.log" 2>&1 &
wait
tar -cf "$OUT/fast_multitask_models.tar" build/paper_tables/s"$STEPS"/fast_multitask 2>/dev/null
tail -n 4 "$OUT"/*.log

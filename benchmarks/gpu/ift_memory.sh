#!/usr/bin/env bash
# Time and peak memory per step of every ift method on the largest randomly initialised Llama
# this script is sized for (0.82B parameters: d_model 2048, 16 layers, 32 heads, d_ff 5632,
# TinyLlama's shape with the suite's 600-token vocabulary), on one GPU, sized to finish within
# 10 minutes (not yet run on a GPU: none was lent to the task that wrote it).
#
#   bash benchmarks/gpu/ift_memory.sh [OUT]         (OUT default: results/ift/gpu-memory)
#
# Each method runs 8 steps of the quick profile's data (batch 3, rows up to 64 tokens; no
# pretraining: the model is random, only its cost is measured) through `dps-bench run`, so the
# numbers are the harness's own (median time per step, peak memory of a training step); a method
# that does not fit is recorded with status `oom`, the step and the memory it needed. Then
# `dps-bench report` writes the tables (OUT/report/REPORT.md, with the cost table). Set
# DPS_IFT_SIZE="d_model=... layers=... heads=... d_ff=..." for another shape and DPS_DEVICE=cpu
# to try the script on a CPU (tests/test_ift.py does, at a tiny shape).
set -euo pipefail
OUT=${1:-results/ift/gpu-memory}
SIZE=${DPS_IFT_SIZE:-"d_model=2048 layers=16 heads=32 d_ff=5632"}
DEVICE=${DPS_DEVICE:-cuda}
sets=()
for kv in $SIZE pretrain_steps=0 batch_size=3 meta_batch_size=3 eval_every=8 test_per_task=8 \
          cds.pretrain_steps=2 cds.batch_size=3 classact.ref_steps=2 classact.batch_size=3; do
    sets+=(--set "$kv")
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
dps-bench run --scenario ift --profile quick --steps 8 --device "$DEVICE" --out "$OUT" \
    --methods mixing,random_select,bads,bads_prior_only,cds,classact,askllm_o,blo \
    --seeds 0 --no-progress "${sets[@]}"
dps-bench report --out "$OUT" --to "$OUT/report"

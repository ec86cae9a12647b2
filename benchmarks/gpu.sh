#!/usr/bin/env bash
# The GPU checks and the GPU rows of benchmarks/README.md in one run, each result in a file of its own:
#   bash benchmarks/gpu.sh [OUTPUT_DIR] [more `f2tune bench` options, which override the ones below]
# 1. tests/gpu (CUDA training steps in every precision, the feature cache, generation on the device);
# 2. Florence-2-base at 768x768 (random weights), bf16-mixed: full, LoRA (+ cache) and frozen-encoder
#    training against the reference loop in fp32 (as the public scripts train) and in bf16 autocast
#    (equal precision), with samples/s, peak memory and MFU; then validation generation, one loader
#    worker's data loading, and last (inductor compiles for minutes) full and LoRA with trainer.compile.
# A smoke run on a CPU: bash benchmarks/gpu.sh /tmp/gpu-smoke --device cpu --sizes tiny --steps 2
set -uo pipefail
out=${1:-gpu-bench}
shift || true
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0

run() {  # name, command...: the command's output in $out/<name>.log, its failure remembered
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log" || status=1
}

common=(--device cuda --sizes base --base-image-size 768 --precision bf16-mixed --batch-size 8 --steps 8 --threads 0)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1 || true
run tests python -m pytest -q -m gpu tests/gpu
run train-vs-fp32 f2tune bench "${common[@]}" --modes full,lora,frozen "$@"
run train-vs-bf16 f2tune bench "${common[@]}" --modes full,lora --reference-precision bf16-mixed "$@"
run generate f2tune bench "${common[@]}" --modes generate "$@"
run load f2tune bench "${common[@]}" --modes load "$@"
run train-compile f2tune bench "${common[@]}" --modes full,lora --compile "$@"
exit $status

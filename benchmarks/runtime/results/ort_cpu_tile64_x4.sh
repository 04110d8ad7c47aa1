#!/usr/bin/env bash
# The commands behind ort_cpu_tile64_x4.json (run on the 2-core development CPU, 2026-12-08, with
# COMPSRT_DATA=/work/shared/data, PY=/work/main/.venv/bin/python and PYTHONPATH set to the checkout).
# Rerun: bash benchmarks/runtime/results/ort_cpu_tile64_x4.sh  (writes the JSON beside this file)
set -euxo pipefail
cd "$(dirname "$0")/../../.."
export COMPSRT_DATA=${COMPSRT_DATA:-../shared/data} OMP_NUM_THREADS=2
PY=${PY:-.venv/bin/python}
W=${W:-/tmp/ortb}
mkdir -p "$W"
$PY -m compsrt export --checkpoint "$COMPSRT_DATA/weights/swinir_light_x4.pth" --tile 64 --hadamard matmul --out "$W/x4_fp.onnx"
$PY -m compsrt calibrate --scale 4 --preset W8A8 --iters 0 --device cpu --out "$W/x4_w8a8_dobi.pt"
$PY -m compsrt export --checkpoint "$W/x4_w8a8_dobi.pt" --tile 64 --hadamard matmul --out "$W/x4_w8a8_matmul.onnx"
$PY -m compsrt calibrate --scale 4 --preset W4A8 --iters 0 --device cpu --out "$W/x4_w4a8_dobi.pt"
$PY -m compsrt export --checkpoint "$W/x4_w4a8_dobi.pt" --tile 64 --hadamard matmul --out "$W/x4_w4a8_matmul.onnx"
$PY -m benchmarks.runtime.ort_cpu_tile fp="$W/x4_fp.onnx" w8a8="$W/x4_w8a8_matmul.onnx" w4a8="$W/x4_w4a8_matmul.onnx" \
  ort_int8="$W/x4_fp_ortq.onnx" --ort-quantize "$W/x4_fp.onnx" "$W/x4_fp_ortq.onnx" --iters 20 \
  --json benchmarks/runtime/results/ort_cpu_tile64_x4.json

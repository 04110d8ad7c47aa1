#!/usr/bin/env bash
# Engine sizes and builder logs of every internal precision (x4, tile 64, TensorRT-RTX on the CPU), beside the
# FP32-internal builds: FP weights, and W8A8 from DOBI ranges only (--iters 0: the graph's structure, not its
# accuracy) in the matmul and fused-quant variants. Writes the logs and one JSON to benchmarks/export/results/engines.
#   COMPSRT_DATA=/work/shared/data bash benchmarks/export/precision_engines.sh /tmp/precision_engines
set -euo pipefail
work=${1:-/tmp/precision_engines}
py=${PYTHON:-/work/main/.venv/bin/python}
data=${COMPSRT_DATA:?set COMPSRT_DATA to the shared data folder}
mkdir -p "$work"
run() { echo "+ $*"; "$@"; }
[ -f "$work/x4_fp.ranges.json" ] || run $py -m compsrt ranges --weights "$data/weights/swinir_light_x4.pth" --patches 32 --out "$work/x4_fp.ranges.json"
[ -f "$work/x4_w8a8.pt" ] || run $py -m compsrt calibrate --scale 4 --preset W8A8 --iters 0 --device cpu --out "$work/x4_w8a8.pt"
args=()
for internal in fp32 bf16 fp16; do
  run $py -m compsrt export --checkpoint "$data/weights/swinir_light_x4.pth" --tile 64 --hadamard matmul \
    --internal-precision $internal --ranges "$work/x4_fp.ranges.json" --out "$work/x4_fp_$internal.onnx"
  args+=("fp-$internal=$work/x4_fp_$internal.onnx")
  for variant in matmul fused-quant; do
    run $py -m compsrt export --checkpoint "$work/x4_w8a8.pt" --tile 64 --hadamard $variant \
      --internal-precision $internal --out "$work/x4_w8a8_${variant}_$internal.onnx"
    args+=("w8a8-$variant-$internal=$work/x4_w8a8_${variant}_$internal.onnx")
  done
done
run $py -m benchmarks.export.engine_sizes "${args[@]}" --engines "$work/engines" \
  --out-dir benchmarks/export/results/engines --json sizes_internal_precision.json

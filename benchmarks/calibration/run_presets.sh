#!/usr/bin/env bash
# The presets table on one GPU: every config calibrates at once (run_device.py --jobs = their number), is scored on
# Set5 / Set14 / B100, exported (plugin variant: `compsrt inspect` sizes, per-site bits) and checked against ONNX
# Runtime on Set5 (forced site check included); then one archive of the JSON results and logs and one of the
# packed models under $OUT (the device tool brings back few files). The runner is stopped after HARD_S seconds
# (what finished by then is archived; it terminates its workers); training loops stop at BUDGET_S. Leave HARD_S at least
# 45 s above BUDGET_S: scoring, packing and exiting took 23-28 s and more after the loops stopped (run 13's x2 calls,
# 35 s apart: JSONs written 3-7 s before the stop). A table that takes several calls: PRIOR=DIR
# copies earlier result JSONs in first, so configurations already complete there (and the FP row) are skipped;
# JOBS=N runs N at a time (default: all); RUNNER_ARGS are passed on to run_device.py (e.g. --lr-mode step).
# usage (device, repo root, carry $CARRY from prepare_carry.py --scale $SCALE):
#   [SCALE=4] [CARRY=.carry/i13_x4] [ONNX_ARGS=] [PRIOR=DIR] [JOBS=N] [RUNNER_ARGS=...] \
#     bash benchmarks/calibration/run_presets.sh BUDGET_S HARD_S CONFIG...
#   (CONFIG: deploy:W4A8:-@150, paper:4:-:clamp; ONNX_ARGS= (empty) skips the ONNX checks, e.g. where onnx_graphsurgeon is missing:
#   run them later with run_device.py --onnx-from on the packed models)
set -u
B=$1; H=$2; shift 2
S=${SCALE:-4}
C=${CARRY:-.carry/i13_x$S}
ONNX_ARGS=${ONNX_ARGS---onnx --parity-threads 2}
export PYTHONUNBUFFERED=1 PYTHONPATH=. PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True OMP_NUM_THREADS=2
export COMPSRT_DATA=$C/data COMPSRT_CACHE=$C/cache
mkdir -p "$OUT/r"
if [ -n "${PRIOR:-}" ]; then cp "$PRIOR"/*.json "$OUT/r/"; fi
timeout "$H" python -m benchmarks.calibration.run_device --scale "$S" --jobs "${JOBS:-$#}" --budget "$B" $ONNX_ARGS ${RUNNER_ARGS:-} \
  --out "$OUT/r" --configs "$@" > "$OUT/r/runner.log" 2>&1
echo "runner rc=$?" >> "$OUT/r/runner.log"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "$OUT/r/runner.log" 2>&1
cat "$OUT/r/runner.log"
tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='*.csrt' --exclude='*.onnx' -C "$OUT" r
(cd "$OUT/r" && tar czf "$OUT/packed.tgz" *.csrt)
rm -rf "$OUT/r"

#!/usr/bin/env bash
# One run_device.py per GPU of a two-GPU machine (two calibrations at a time on each), then one archive
# of the JSON results and logs under $OUT/pack (the device tool brings back few files).
# usage (device, repo root, carry .carry/xS from prepare_carry.py):
#   [X0="--lr-mode step"] [X1=...] bash benchmarks/calibration/run_two_gpus.sh SCALE ITERS BUDGET_S "GPU0 CONFIGS" "GPU1 CONFIGS"
set -u
S=$1; N=$2; B=$3
export PYTHONUNBUFFERED=1 PYTHONPATH=. PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export COMPSRT_DATA=.carry/x$S/data COMPSRT_CACHE=.carry/x$S/cache
R="python -m benchmarks.calibration.run_device --scale $S --iters $N --jobs 2 --budget $B"
(CUDA_VISIBLE_DEVICES=0 timeout $((B + 60)) $R ${X0:-} --out "$OUT/g0" --configs $4 > "$OUT/g0.log" 2>&1) &
(CUDA_VISIBLE_DEVICES=1 timeout $((B + 60)) $R ${X1:-} --out "$OUT/g1" --configs $5 > "$OUT/g1.log" 2>&1) &
wait
cat "$OUT/g0.log" "$OUT/g1.log" | grep -v "^{"
for f in "$OUT"/g*/x*.json; do
  python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(r['tag'], {k: round(v['psnr'], 3) for k, v in r.get('eval', {}).items()})" "$f"
done
mkdir -p "$OUT/pack"
tar czf "$OUT/pack/x${S}_results.tgz" --exclude='*.csrt' --exclude='*.pt' -C "$OUT" g0 g1 g0.log g1.log
rm -rf "$OUT/g0" "$OUT/g1" "$OUT/g0.log" "$OUT/g1.log"

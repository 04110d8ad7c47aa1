#!/usr/bin/env bash
# The H200 profile of the DQC step, before (BEFORE_TREE: a checkout of an earlier commit, with this branch's
# profile_step.py copied in) and after (AFTER_TREE: this checkout), in one device call.
# usage (device, from the parent of both checkouts; carry them and .carry/<name> from prepare_carry.py):
#   CARRY=.carry/i12_x4 BEFORE_TREE=.wt12_before AFTER_TREE=.wt12 bash .wt12/benchmarks/calibration/profile_before_after.sh
# optional: ITERS (200), VARIANTS (the after run's, see profile_step.py), AFTER_ARGS (more profile_step flags
# for the after run), TESTS (pytest -k expression of GPU tests to run in AFTER_TREE afterwards; empty: none).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export COMPSRT_DATA=$PWD/$CARRY/data COMPSRT_CACHE=$PWD/$CARRY/cache
P=benchmarks.calibration.profile_step
quiet() { tr '\r' '\n' | grep -v "it/s\]\|it\]$\|^\s*$"; }
nvidia-smi -L
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
if [ -n "${BEFORE_TREE:-}" ]; then
  (cd "$BEFORE_TREE" && python3 -m $P --iters "${ITERS:-200}" --variants base --json "$OUT/before.json" 2>&1 | quiet | tee "$OUT/before.log")
fi
(cd "$AFTER_TREE" && python3 -m $P --iters "${ITERS:-200}" --variants "${VARIANTS:-base,seed1,pool}" \
   --determinism 20 ${AFTER_ARGS:-} --json "$OUT/after.json" 2>&1 | quiet | tee "$OUT/after.log")
if [ -n "${TESTS:-}" ]; then
  (cd "$AFTER_TREE" && python3 -m pytest -q -p no:cacheprovider tests/test_calibration.py -m gpu -k "$TESTS" 2>&1 | tail -15 | tee "$OUT/tests.log")
fi

#!/usr/bin/env bash
# CPU usability: wall time of a 10-iteration calibration next to a Set5 evaluation, in one run (the ratio).
# usage: bash benchmarks/calibration/cpu_calibrate_vs_eval.sh LOGFILE   (repo root; default data)
set -uo pipefail
LOG=${1:-/dev/stdout}
PY=${PY:-.venv/bin/python}
{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git rev-parse --short HEAD)"
  t0=$(date +%s.%N)
  PYTHONPATH=. $PY -m compsrt calibrate --scale 4 --bits 4 --iters 10 --device cpu --out /tmp/cpu_calib_x4_w4a4.pt 2>&1 | tr '\r' '\n' | grep -v "it/s\]\|quantizer/s\]\|^\s*$"
  t1=$(date +%s.%N)
  PYTHONPATH=. $PY -m compsrt eval --scale 4 --datasets Set5 2>&1 | tr '\r' '\n' | grep -v "it/s\]\|^\s*$"
  t2=$(date +%s.%N)
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 -c "import sys; c, e = float(sys.argv[2]) - float(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'calibrate 10 iterations: {c:.1f} s wall; eval Set5: {e:.1f} s wall; ratio {c / e:.2f}')" $t0 $t1 $t2
} > "$LOG" 2>&1

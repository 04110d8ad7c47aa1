"""Start-up time of the ``compsrt`` command: ``--help`` and missing-input errors (issue 16).

    python -m benchmarks.cli_startup [--repo PATH] [--runs 7] [--json out.json]

Runs each command line ``--runs`` times in a fresh interpreter (``python -m compsrt``, PYTHONPATH =
``--repo``, default this checkout) and prints the median and minimum wall time. ``--repo`` pointing at
an older checkout gives the before/after comparison on the same machine (docs/runtime.md records it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "upscale, missing input": ["upscale", "missing.png", "out.png"],
    "build, missing ONNX": ["build", "--onnx", "missing.onnx", "--out", "x.plan"],
    "export, missing checkpoint": ["export", "--checkpoint", "missing.pt", "--tile", "64", "64", "--out", "x.onnx"],
    "inspect, missing ONNX": ["inspect", "missing.onnx"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to time (default: this one)")
    ap.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    ap.add_argument("--json", type=Path, help="also write the results here (default: not written)")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.repo.resolve()))
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    rows = {}
    for name, argv in COMMANDS.items():
        times, rc = [], None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "compsrt", *argv], env=env, cwd="/tmp", capture_output=True)
            times.append(time.perf_counter() - t0)
            rc = r.returncode
        rows[name] = {"median_s": statistics.median(times), "min_s": min(times), "exit": rc}
        print(f"{name:<28} median {rows[name]['median_s']:.2f} s  min {rows[name]['min_s']:.2f} s  (exit {rc})", flush=True)
    load = os.getloadavg()
    machine = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "load_avg_1m": round(load[0], 2)}
    print(f"repo {args.repo} @ {commit}; {machine}")
    if args.json:
        args.json.write_text(json.dumps({"repo": str(args.repo), "commit": commit, "runs": args.runs, "machine": machine,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

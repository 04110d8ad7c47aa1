"""Ctrl-C in a folder upscale: seconds from SIGINT to exit, and whether the console lists every file written.

    python -m benchmarks.runtime.ctrl_c [--repo PATH] [--images 12] [--size 128x128] [--runs 3] [--json out.json]

Runs ``compsrt upscale IN OUT --weights W --scale 2`` (SwinIR-light x2, the shared stand-in weights, on the
CPU) in a fresh interpreter with PYTHONPATH = ``--repo`` (default this checkout; an older checkout gives the
before figure on the same machine), sends SIGINT once the first output file exists, and records the seconds
until the process exits, the files the console listed, the files on disk at exit and two seconds later.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = Path(os.environ.get("COMPSRT_DATA", "/work/shared/data")) / "weights" / "swinir_light_x2.pth"


def one_run(repo: Path, folder: Path, n: int, size: tuple[int, int], seed: int) -> dict:
    src, out = folder / f"in{seed}", folder / f"out{seed}"
    src.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(src / f"im{i:03d}.png")
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen([sys.executable, "-m", "compsrt", "upscale", str(src), str(out), "--weights", str(WEIGHTS),
                             "--scale", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=repo)
    deadline = time.time() + 600
    while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())) and time.time() < deadline:
        time.sleep(0.02)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=600)
    seconds = time.perf_counter() - t0
    listed = sorted(Path(ln.split(" -> ")[1].split(" (")[0]).name for ln in stdout.splitlines() if " -> " in ln)
    at_exit = sorted(p.name for p in out.iterdir())
    time.sleep(2.0)
    later = sorted(p.name for p in out.iterdir())
    return {"seconds_sigint_to_exit": round(seconds, 3), "exit_status": proc.returncode, "listed": listed,
            "on_disk_at_exit": at_exit, "on_disk_2s_later": later, "listing_matches_disk": listed == at_exit == later,
            "stderr_tail": stderr.strip().splitlines()[-2:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--size", default="128x128", help="WxH")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    git = subprocess.run(["git", "-C", str(a.repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="compsrt-ctrl-c-") as tmp:
        runs = [one_run(a.repo, Path(tmp), a.images, (w, h), seed) for seed in range(a.runs)]
    secs = [r["seconds_sigint_to_exit"] for r in runs]
    result = {"repo": str(a.repo), "commit": git.stdout.strip() or None, "images": a.images, "size": a.size,
              "model": "SwinIR-light x2 (stand-in weights), torch CPU, default tile/workers",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "median_seconds_sigint_to_exit": sorted(secs)[len(secs) // 2], "runs": runs}
    for i, r in enumerate(runs):
        print(f"run {i}: exit {r['exit_status']} after {r['seconds_sigint_to_exit']:.2f} s; listed {len(r['listed'])}, "
              f"on disk {len(r['on_disk_at_exit'])} (2 s later {len(r['on_disk_2s_later'])}); "
              f"listing matches disk: {r['listing_matches_disk']}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""H200: pipelined throughput against compute-only for several host-thread counts (one model, one size).

The 320x180 -> x4 pipelined run stayed below 0.8x compute-only with compsrt's fast PNG writer while
its device stage took 16 ms per image in the pipeline against 12 ms alone: the host threads slow
the thread that launches the compiled model. This measures how the thread count moves that
(FP SwinIR-light, BF16 autocast + torch.compile, whole image in one tile, PNG level 1, compsrt's
writer). Usage on the device (weights in $COMPSRT_WEIGHTS_DIR):

    python -m benchmarks.throughput.host_workers --out $OUT --images 64 --source kodim05.png --workers 16,8,4,16,8:1
"""

import argparse
import json
import sys
import time
from pathlib import Path

from compsrt.encoding import EncodeOptions
from compsrt.runtime.backends import torch_fp_backend
from compsrt.runtime.pipelined import throughput_profile
from compsrt.runtime.profile import machine_info
from compsrt.runtime.upscaler import TiledUpscaler


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--source", type=Path)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--workers", default="16,8,4,16",
                    help="host-thread counts, run in this order; N:MS also sets Python's GIL switch interval to MS ms")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    up = TiledUpscaler(torch_fp_backend(args.scale, device="cuda", dtype="bf16", compile=True), tile=0)
    rows = []
    default_interval = sys.getswitchinterval()
    for i, spec in enumerate(args.workers.split(",")):
        n, _, ms = spec.partition(":")
        n = int(n)
        sys.setswitchinterval(float(ms) / 1e3 if ms else default_interval)
        r = throughput_profile(up, size, images=args.images, source=args.source, encode=EncodeOptions(png_level=1),
                               host_workers=n, warmup=3 if i == 0 else 0, sequential=False)
        rows.append({"host_workers": n, "switch_interval_ms": 1e3 * sys.getswitchinterval(), "compute_only": r["compute_only"], "pipelined": r["pipelined"]})
        print(f"{n:>2} host threads, GIL switch {1e3 * sys.getswitchinterval():.1f} ms: compute only {r['compute_only']['images_per_s']:.2f}, pipelined "
              f"{r['pipelined']['images_per_s']:.2f} images/s ({r['pipelined']['vs_compute_only']:.2f}x), device stage "
              f"{r['pipelined']['stage_ms_per_image'].get('compute', 0):.1f} ms/image", flush=True)
        (args.out / "host_workers_h200.json").write_text(json.dumps(
            {"command": "python -m benchmarks.throughput.host_workers " + " ".join(sys.argv[1:]),
             "size": list(size), "scale": args.scale, "rows": rows, "machine": machine_info(),
             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

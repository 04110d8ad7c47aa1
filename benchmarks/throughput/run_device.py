"""H200 run: pipelined folder throughput against compute-only, single-image latency, before/after.

For FP SwinIR-light, BF16 autocast + torch.compile, whole image in one tile, 320x180 -> x4 and
640x360 -> x2: :func:`compsrt.runtime.pipelined.throughput_profile` (the code behind
``compsrt profile --mode throughput``) with compsrt's PNG writer at level 1 (after), and the same
pipelined run with Pillow's PNG encoder at level 1 (before: the writer of the 2026-12-01 run); the
sequential path with each writer gives the single-image latency. Usage on the device (weights in
$COMPSRT_WEIGHTS_DIR, a source photo via --source):

    python -m benchmarks.throughput.run_device --out $OUT --images 64 --source kodim05.png
"""

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from compsrt.encoding import EncodeOptions
from compsrt.runtime.backends import torch_fp_backend
from compsrt.runtime.pipelined import throughput_profile, throughput_text
from compsrt.runtime.profile import machine_info
from compsrt.runtime.upscaler import TiledUpscaler


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--source", type=Path)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--cuda-graph", action="store_true", help="replay one CUDA graph per shape (TorchBackend cuda_graph)")
    ap.add_argument("--scales", default="4,2", help="which of the two cases to run: 4 (320x180), 2 (640x360)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    after, before = EncodeOptions(png_level=1), EncodeOptions(png_level=1, png_writer="pillow")
    runs = []
    scales = {int(v) for v in args.scales.split(",")}
    for scale, size in [c for c in ((4, (320, 180)), (2, (640, 360))) if c[0] in scales]:
        label = (f"torch-fp-{args.dtype}{'' if args.no_compile else '-compiled'}{'-graph' if args.cuda_graph else ''} "
                 f"{size[0]}x{size[1]} x{scale}")
        try:
            t0 = time.perf_counter()
            b = torch_fp_backend(scale, device="cuda", dtype=args.dtype, compile=not args.no_compile,
                                 cuda_graph=args.cuda_graph)
            up = TiledUpscaler(b, tile=0)
            r = throughput_profile(up, size, images=args.images, source=args.source, encode=after,
                                   before_encode=before, host_workers=os.cpu_count(), warmup=3)
            r["label"] = label
            print(throughput_text(r), flush=True)
            rb = throughput_profile(up, size, images=args.images, source=args.source, encode=before,
                                    host_workers=os.cpu_count(), warmup=0, sequential=False)
            r["pipelined_before"] = {k: rb[k] for k in ("compute_only", "pipelined", "encode")}
            print(f"  before (Pillow writer): compute only {rb['compute_only']['images_per_s']:.2f}, pipelined "
                  f"{rb['pipelined']['images_per_s']:.2f} images/s ({rb['pipelined']['vs_compute_only']:.2f}x)",
                  flush=True)
            r["seconds_total"] = time.perf_counter() - t0
            r["memory"] = b.memory()
            runs.append(r)
        except Exception as exc:
            traceback.print_exc()
            runs.append({"label": label, "error": f"{exc.__class__.__name__}: {exc}"})
        (args.out / "throughput_h200.json").write_text(json.dumps(
            {"command": "python -m benchmarks.throughput.run_device " + " ".join(sys.argv[1:]), "runs": runs,
             "machine": machine_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

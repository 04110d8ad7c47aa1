"""H200 run: pipelined folder throughput against compute-only, single-image latency, before/after.

For FP SwinIR-light, BF16 autocast + torch.compile, whole image in one tile, 320x180 -> x4 and
640x360 -> x2: :func:`compsrt.runtime.pipelined.throughput_profile` (the code behind
``compsrt profile --mode throughput``) with the fast encoder (PNG level 1) against the sequential
path with Pillow's default level 6 (before). Also the pipelined path with one device worker.
Usage on the device (weights in $COMPSRT_WEIGHTS_DIR, a source photo via --source):

    python -m benchmarks.throughput.run_device --out $OUT --images 96 --source kodim05.png
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
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--source", type=Path)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for scale, size in ((4, (320, 180)), (2, (640, 360))):
        label = f"torch-fp-{args.dtype}{'' if args.no_compile else '-compiled'} {size[0]}x{size[1]} x{scale}"
        try:
            t0 = time.perf_counter()
            b = torch_fp_backend(scale, device="cuda", dtype=args.dtype, compile=not args.no_compile)
            up = TiledUpscaler(b, tile=0)
            try:
                r = throughput_profile(up, size, images=args.images, source=args.source,
                                       encode=EncodeOptions(png_level=1), host_workers=os.cpu_count(), warmup=3)
            except Exception:  # keep the figures of this size with one device worker rather than none
                traceback.print_exc()
                r = throughput_profile(up, size, images=args.images, source=args.source,
                                       encode=EncodeOptions(png_level=1), host_workers=os.cpu_count(), warmup=1,
                                       device_workers=1)
                r["note"] = "two device workers failed (traceback in the log); one device worker"
            r["label"] = label
            print(throughput_text(r), flush=True)
            r1 = throughput_profile(up, size, images=args.images, source=args.source, encode=EncodeOptions(png_level=1),
                                    host_workers=os.cpu_count(), device_workers=1, warmup=0, sequential=False)
            r["one_device_worker"] = {k: r1[k] for k in ("compute_only", "pipelined")}
            print(f"  one device worker: compute only {r1['compute_only']['images_per_s']:.2f}, pipelined "
                  f"{r1['pipelined']['images_per_s']:.2f} images/s", flush=True)
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

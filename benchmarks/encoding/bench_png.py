"""Choose the default PNG compression level: encode time and size per zlib level on SR-like outputs.

Inputs: 320x180 crops of the Kodak training images ($COMPSRT_DATA/train/Kodak) upscaled x4 with the
MATLAB-compatible bicubic (smooth, like super-resolved images), encoded with Pillow at levels 0-9.
Prints a table and writes results/cpu_png_levels/results.json beside this script (or --out). Run:

    python -m benchmarks.encoding.bench_png --images 6 --repeat 3
"""

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from compsrt.evaluation.bicubic import imresize
from compsrt.images import load_image
from compsrt.paths import data_root


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu_png_levels" / "results.json")
    args = ap.parse_args()
    files = sorted((data_root() / "train" / "Kodak").glob("*.png"))[: args.images]
    if not files:
        sys.exit("no Kodak images under $COMPSRT_DATA/train/Kodak")
    outs = [imresize(load_image(f).rgb[100:280, 100:420], 4) for f in files]  # 1280x720 each
    rows = []
    for level in range(10):
        secs, size = [], 0
        for img in outs:
            pil = Image.fromarray(img)
            best = min(_time(pil, level) for _ in range(args.repeat))
            secs.append(best[0])
            size += best[1]
        rows.append({"level": level, "ms_per_image": 1e3 * float(np.mean(secs)), "bytes_per_image": size / len(outs)})
    ref = rows[6]
    for r in rows:
        r["time_vs_6"] = r["ms_per_image"] / ref["ms_per_image"]
        r["size_vs_6"] = r["bytes_per_image"] / ref["bytes_per_image"]
        print(f"level {r['level']}: {r['ms_per_image']:7.1f} ms  {r['bytes_per_image'] / 1e6:6.3f} MB  "
              f"time x{r['time_vs_6']:.2f}  size x{r['size_vs_6']:.3f} (vs Pillow's default 6)")
    result = {"command": "python -m benchmarks.encoding.bench_png " + " ".join(sys.argv[1:]),
              "images": [f.name for f in files], "output_size": [1280, 720], "rows": rows,
              "machine": {"host": platform.node(), "python": platform.python_version(),
                          "pillow": Image.__version__, "cpu": _cpu()},
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


def _time(pil, level):
    buf = io.BytesIO()
    t0 = time.perf_counter()
    pil.save(buf, format="PNG", compress_level=level)
    return time.perf_counter() - t0, buf.tell()


def _cpu():
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return None


if __name__ == "__main__":
    sys.exit(main())

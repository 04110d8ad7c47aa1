"""Choose the 8-bit PNG writer: time, size, thread scaling and GIL hold of each candidate on SR-like outputs.

Inputs as ``bench_png.py``: 320x180 crops of Kodak training images upscaled x4 (1280x720, MATLAB
bicubic: smooth like super-resolved images). Candidates, each at zlib level 1:

* ``pillow``: Pillow's encoder (its own filtering and zlib), the writer before ``compsrt.encoding.png_bytes``;
* ``filter-<f>+<deflate>``: one PNG filter on every row (numpy) then ISA-L or zlib deflate, for the
  five filters: why ``png_bytes`` uses Average;
* ``compsrt``: :func:`compsrt.encoding.png_bytes` itself (Average + ISA-L, zlib without isal);
* ``cv2``: OpenCV's libpng writer, where opencv is installed.

Thread scaling: images/s with 1, 2 and ``--threads`` threads encoding. GIL: the share of a pure-Python
counting thread's speed kept while one thread encodes (100 % = the encoder never holds the GIL; the
device worker of the pipelined upscaler is such a Python thread). Run:

    python -m benchmarks.encoding.bench_writers --out benchmarks/encoding/results/<run>/writers.json
"""

import argparse
import io
import json
import os
import platform
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from compsrt.encoding import png_bytes
from compsrt.evaluation.bicubic import imresize
from compsrt.images import load_image
from compsrt.paths import data_root


def filtered(a: np.ndarray, kind: int) -> np.ndarray:
    """PNG filter ``kind`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) on every row, type byte first."""
    h, w, c = a.shape
    raw = a.reshape(h, w * c).astype(np.int16)
    left = np.zeros_like(raw)
    left[:, c:] = raw[:, :-c]
    up = np.zeros_like(raw)
    up[1:] = raw[:-1]
    if kind == 0:
        pred = np.zeros_like(raw)
    elif kind == 1:
        pred = left
    elif kind == 2:
        pred = up
    elif kind == 3:
        pred = (left + up) >> 1
    else:
        ul = np.zeros_like(raw)
        ul[1:, c:] = raw[:-1, :-c]
        p = left + up - ul
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - ul)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
    out = np.empty((h, w * c + 1), np.uint8)
    out[:, 0] = kind
    out[:, 1:] = (raw - pred).astype(np.uint8)
    return out


def candidates() -> dict:
    def pillow(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    deflaters = {"zlib": lambda d: zlib.compress(d, 1)}
    try:
        from isal import isal_zlib

        deflaters["isal"] = lambda d: isal_zlib.compress(d, 1)
    except ImportError:
        pass
    c = {"pillow": pillow, "compsrt": lambda a: png_bytes(a, 1)}
    for name, deflate in deflaters.items():
        for k, f in enumerate(("none", "sub", "up", "average", "paeth")):
            c[f"filter-{f}+{name}"] = lambda a, k=k, deflate=deflate: deflate(filtered(a, k))  # IDAT only
    try:
        import cv2

        c["cv2"] = lambda a: cv2.imencode(".png", a[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    except ImportError:
        pass
    return c


def gil_share(fn, img, seconds: float) -> float:
    """Counting speed of a pure-Python thread while ``fn`` encodes in another, over its speed alone."""
    def count(stop, n):
        while not stop.is_set():
            n[0] += 1

    def rate(encode: bool) -> float:
        stop, n = threading.Event(), [0]
        ts = [threading.Thread(target=count, args=(stop, n))]
        if encode:
            ts.append(threading.Thread(target=lambda: [fn(img) for _ in iter(stop.is_set, True)]))
        for t in ts:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in ts:
            t.join()
        return n[0] / seconds

    return rate(True) / rate(False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", nargs="*", type=Path, help="source photos (default: the first --images Kodak training images)")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--gil-seconds", type=float, default=1.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    files = args.files or sorted((data_root() / "train" / "Kodak").glob("*.png"))[: args.images]
    if not files:
        sys.exit("no Kodak images under $COMPSRT_DATA/train/Kodak; pass --files")
    imgs = [np.ascontiguousarray(imresize(load_image(f).rgb[100:280, 100:420], 4)) for f in files]
    rows = {}
    for name, fn in candidates().items():
        secs, size = [], 0
        for a in imgs:
            best = None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                data = fn(a)
                dt = time.perf_counter() - t0
                best = dt if best is None else min(best, dt)
            secs.append(best)
            size += len(data)
        rows[name] = {"ms_per_image": 1e3 * float(np.mean(secs)), "bytes_per_image": size / len(imgs)}
    ref = rows["pillow"]
    for name, r in rows.items():
        r["time_vs_pillow"] = r["ms_per_image"] / ref["ms_per_image"]
        r["size_vs_pillow"] = r["bytes_per_image"] / ref["bytes_per_image"]
    writers = [n for n in ("pillow", "compsrt", "cv2") if n in rows]
    for name in writers:
        fn = candidates()[name]
        scaling = {}
        for n in sorted({1, 2, args.threads}):
            work = imgs * max(2, 2 * n // len(imgs))
            with ThreadPoolExecutor(n) as pool:
                t0 = time.perf_counter()
                list(pool.map(fn, work))
                scaling[str(n)] = len(work) / (time.perf_counter() - t0)
        rows[name]["images_per_s_by_threads"] = scaling
        rows[name]["python_thread_speed_kept"] = gil_share(fn, imgs[0], args.gil_seconds)
    for name, r in rows.items():
        extra = ""
        if "images_per_s_by_threads" in r:
            extra = ("  images/s by threads " + ", ".join(f"{k}: {v:.1f}" for k, v in r["images_per_s_by_threads"].items())
                     + f"; Python thread keeps {r['python_thread_speed_kept']:.0%}")
        print(f"{name:<24} {r['ms_per_image']:7.1f} ms  {r['bytes_per_image'] / 1e6:6.3f} MB  "
              f"time x{r['time_vs_pillow']:.2f} size x{r['size_vs_pillow']:.3f} (vs pillow){extra}", flush=True)
    result = {"command": "python -m benchmarks.encoding.bench_writers " + " ".join(sys.argv[1:]),
              "images": [f.name for f in files], "output_size": [1280, 720], "level": 1, "rows": rows,
              "note": "filter-* rows time the filter and deflate only (no PNG chunks); their bytes are the IDAT data",
              "machine": {"host": platform.node(), "python": platform.python_version(), "pillow": Image.__version__,
                          "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One LR tile through ONNX Runtime's CPU provider, for several graphs, interleaved: is a compressed graph faster?

Each graph is loaded as compsrt's ONNX Runtime backend loads it (`session_from_onnx`: full graph optimisation, except
basic for INT4 graphs) and runs the same tile (a crop of the bundled sample image), round-robin over the graphs so that
the machine's load hits all of them alike; the JSON keeps every time, the median and the load average.

`--ort-quantize FP.onnx OUT.onnx` first writes ONNX Runtime's own static INT8 quantization of an FP graph (QDQ format,
per-channel INT8 weights, INT8 activations calibrated on training patches, never a benchmark image), for comparison.

    python -m benchmarks.runtime.ort_cpu_tile fp=x4_fp.onnx w8a8=x4_w8a8.onnx ort_int8=x4_fp_ortq.onnx \
        --ort-quantize x4_fp.onnx x4_fp_ortq.onnx --iters 20 --json benchmarks/runtime/results/ort_cpu_tile64_x4.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def ort_quantize(fp: Path, out: Path, scale: int, tile: int, patches: int, seed: int) -> dict:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from compsrt.calibration.data import PatchSampler, load_training_lr

    named = load_training_lr(scale, progress=False)
    sampler = PatchSampler([im for _, im in named], patch=tile, seed=seed)
    batch = sampler.sample(patches).numpy().astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": batch[i:i + 1]} for i in range(len(batch))])

        def get_next(self):
            return next(self.items, None)

    t0 = time.perf_counter()
    quantize_static(str(fp), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return {"fp": str(fp), "out": str(out), "patches": patches, "seed": seed, "format": "QDQ",
            "weights": "INT8 per channel", "activations": "INT8", "seconds": time.perf_counter() - t0}


def tile_input(tile: int) -> np.ndarray:
    from compsrt.images import load_image

    sample = Path(__file__).resolve().parents[2] / "compsrt" / "assets" / "sample.png"
    rgb = load_image(sample).rgb.astype(np.float32) / 255.0
    crop = rgb[:tile, :tile]
    if crop.shape[:2] != (tile, tile):
        raise SystemExit(f"the sample image is smaller than a {tile}x{tile} tile")
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graphs", nargs="+", help="NAME=PATH.onnx, static batch 1")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--iters", type=int, default=20, help="timed runs per graph (default 20)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    ap.add_argument("--ort-quantize", nargs=2, type=Path, metavar=("FP", "OUT"))
    ap.add_argument("--patches", type=int, default=16, help="calibration patches for --ort-quantize (default 16)")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)

    from compsrt.runtime.backends.onnxrt import session_from_onnx

    result: dict = {"machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
                    "tile": args.tile, "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
                    "load_average_before": os.getloadavg()}
    if args.ort_quantize:
        result["ort_quantize"] = ort_quantize(*args.ort_quantize, args.scale, args.tile, args.patches, seed=0)
    x = tile_input(args.tile)
    sessions = {}
    for spec in args.graphs:
        name, _, path = spec.partition("=")
        sess = session_from_onnx(path, threads=args.threads)
        sessions[name] = (sess, sess.get_inputs()[0].name, path)
    for _ in range(args.warmup):
        for sess, inp, _ in sessions.values():
            sess.run(None, {inp: x})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.iters):
        for name, (sess, inp, _) in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {inp: x})
            times[name].append((time.perf_counter() - t0) * 1e3)
    result["load_average_after"] = os.getloadavg()
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    result["graphs"] = {name: {"onnx": path, "bytes": Path(path).stat().st_size, "ms": times[name],
                               "median_ms": statistics.median(times[name]), "min_ms": min(times[name])}
                        for name, (_, _, path) in sessions.items()}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    for name, g in result["graphs"].items():
        print(f"{name}: median {g['median_ms']:.1f} ms, min {g['min_ms']:.1f} ms ({g['bytes']:,} B)")
    print(f"load average {result['load_average_before']} -> {result['load_average_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

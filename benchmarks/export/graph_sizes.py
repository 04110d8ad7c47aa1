"""ONNX (and optionally TensorRT-RTX engine) sizes of the FP and the W4 graphs at one tile, against the FP32 weights.

Prints one JSON document: for each graph its ONNX bytes, initialiser bytes by kind (``compsrt inspect``),
duplicate initialisers, and the ratios of the issue-13 targets (FP ONNX / FP32 weights <= 1.3; W4 ONNX / FP
ONNX <= 0.9 with INT8 containers, <= 0.6 with INT4 weights). The W4 model is CompSRT deploy mode with a
range initialisation on one random tile: sizes depend on the shapes and dtypes, not on the calibrated values
(pass ``--checkpoint`` to measure a calibrated one). ``--build`` also builds every graph with TensorRT-RTX
(CPU) and records engine bytes and build seconds.

    .venv/bin/python -m benchmarks.export.graph_sizes --scale 4 --tile 64 [--build] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

from compsrt.calibration.checkpoint import load_model
from compsrt.export.exporter import ExportOptions, build_onnx
from compsrt.export.inspect import inspect_model
from compsrt.paths import weights_dir


def w4_model(fp_path: Path, tile: int) -> torch.nn.Module:
    from compsrt.calibration.qmodel import QuantConfig, observe_and_freeze, quantize_model

    m, _ = load_model(fp_path)
    quantize_model(m, QuantConfig(bits=4, mode="deploy"))
    return observe_and_freeze(m, torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(0)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--weights", type=Path, help="FP SwinIR-light .pth (default: $COMPSRT_WEIGHTS_DIR, else $COMPSRT_DATA/weights)")
    ap.add_argument("--checkpoint", type=Path, help="a compressed deploy-mode checkpoint instead of the range-init W4")
    ap.add_argument("--build", action="store_true", help="also build each graph with TensorRT-RTX (minutes on 2 cores)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    fp_path = args.weights or weights_dir() / f"swinir_light_x{args.scale}.pth"
    fp, _ = load_model(fp_path)
    fp32_weight_bytes = sum(p.numel() * 4 for p in fp.parameters())
    q = load_model(args.checkpoint)[0] if args.checkpoint else w4_model(fp_path, args.tile)
    tile = (args.tile, args.tile)
    graphs = {"fp": (fp, ExportOptions(tile=tile, hadamard="matmul"))}
    for had in ("matmul", "plugin"):
        graphs[f"w4_int8_{had}"] = (q, ExportOptions(tile=tile, hadamard=had, weights="int8"))
        graphs[f"w4_int4_{had}"] = (q, ExportOptions(tile=tile, hadamard=had, weights="int4"))
    out = {"machine": f"{platform.node()} ({platform.machine()}, {platform.processor() or '?'}), "
                      f"torch {torch.__version__}, onnx {onnx.__version__}",
           "scale": args.scale, "tile": args.tile, "fp32_weight_bytes": fp32_weight_bytes,
           "w4_source": str(args.checkpoint) if args.checkpoint else "range init on one random tile", "graphs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, opts) in graphs.items():
            t0 = time.perf_counter()
            proto, side = build_onnx(model, opts)
            r = inspect_model(proto)
            g = {"export_s": round(time.perf_counter() - t0, 1), "onnx_bytes": r["onnx_bytes"], "opset": side["opset"],
                 "initializer_bytes_by_kind": r["initializer_bytes_by_kind"],
                 "duplicate_initializers": r["duplicate_initializers"]["count"],
                 "weight_bytes_by_dtype": r["weight_bytes_by_dtype"]}
            if args.build:
                from compsrt.runtime.engine import parse_and_build

                path = Path(tmp) / f"{name}.onnx"
                onnx.save(proto, str(path))
                b = parse_and_build(path, plugins="python" if opts.hadamard == "plugin" and name != "fp" else None)
                g["engine"] = {"flavor": b.flavor, "version": b.version, "built": b.built, "engine_bytes": b.engine_bytes,
                               "build_s": round(b.seconds, 1), "errors": b.build_errors[:2] + b.parse_errors[:2]}
            out["graphs"][name] = g
            print(name, json.dumps(g), file=sys.stderr, flush=True)
    fp_bytes = out["graphs"]["fp"]["onnx_bytes"]
    out["ratios"] = {"fp_onnx_over_fp32_weights": round(fp_bytes / fp32_weight_bytes, 3),
                     **{f"{k}_over_fp_onnx": round(v["onnx_bytes"] / fp_bytes, 3) for k, v in out["graphs"].items() if k != "fp"}}
    out["targets"] = {"fp_onnx_over_fp32_weights": 1.3, "w4_int8_over_fp_onnx": 0.9, "w4_int4_over_fp_onnx": 0.6}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

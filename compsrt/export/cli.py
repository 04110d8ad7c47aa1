"""``compsrt export``, ``compsrt inspect``, ``compsrt export-check`` and ``compsrt export-parity``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CompsrtError


def _batch(value: str):
    if value == "dynamic":
        return None
    try:
        b = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch takes a positive integer or 'dynamic', got {value!r}") from None
    if b < 1:
        raise argparse.ArgumentTypeError(f"--batch must be >= 1, got {b}")
    return b


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export an FP or compressed (deploy-mode) checkpoint to ONNX for TensorRT")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="SwinIR-light .pth (FP) or a compressed checkpoint (.pt / .csrt from compsrt calibrate)")
    p.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), required=True,
                   help="static input tile in LR pixels (multiples of the window, 8)")
    p.add_argument("--batch", type=_batch, default=1, help="fixed batch size or 'dynamic' (default 1)")
    p.add_argument("--hadamard", choices=("plugin", "matmul"), default="plugin",
                   help="Hadamard as the TensorRT plugin node (default) or as a constant MatMul (standard ops)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; >= 21 with --int4-block)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="input/output dtype; internals (LayerNorm, residuals, softmax) stay FP32")
    p.add_argument("--int4-block", type=int, choices=(64, 128), default=None,
                   help="store 4-bit weights as INT4 blocks along K (opset >= 21)")
    p.add_argument("--out", type=Path, required=True, help="output .onnx (sidecar JSON written next to it)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("inspect", help="summarise an exported ONNX graph (Q/DQ, Hadamards, precisions, weights)")
    p.add_argument("model", type=Path)
    p.add_argument("--layers", action="store_true", help="list every MatMul/Conv with its operand dtypes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = subparsers.add_parser("export-check", help="parse and build an exported ONNX with TensorRT(-RTX) (CPU is fine)")
    p.add_argument("model", type=Path)
    p.add_argument("--plugin", action="store_true", help="register the Python HadamardTransform plugin first")
    p.add_argument("--no-build", action="store_true", help="parse only")
    p.add_argument("--max-batch", type=int, default=4, help="profile maximum for a dynamic batch (default 4)")
    p.add_argument("--verbose-log", type=Path, help="write the verbose TensorRT log here")
    p.add_argument("--engine", type=Path, help="also write the serialized engine")
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser("export-parity", help="ONNX Runtime (matmul variant) vs the PyTorch deploy simulation on a benchmark")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--onnx", type=Path, help="exported matmul-variant ONNX (default: exported to a temporary file)")
    p.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), default=(64, 64))
    p.add_argument("--dataset", default="Set5")
    p.add_argument("--data-root", type=Path, help="benchmarks folder (default $COMPSRT_BENCHMARKS)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the PyTorch batch-8 vs batch-1 run (the simulation's own float noise floor)")
    p.add_argument("--no-site-check", action="store_true",
                   help="skip the site-by-site check (first tile, PyTorch forced to ONNX Runtime's codes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parity)


def cmd_export(args) -> int:
    from .exporter import ExportOptions, export_checkpoint

    opts = ExportOptions(tile=tuple(args.tile), batch=args.batch, hadamard=args.hadamard, opset=args.opset,
                         io_dtype=args.precision, int4_block=args.int4_block)
    res = export_checkpoint(args.checkpoint, args.out, opts)
    s = res.sidecar
    print(f"wrote {res.onnx_path} ({res.onnx_path.stat().st_size:,} bytes) and {res.sidecar_path}: x{s['scale']} "
          f"{s['mode']} {s['bits']}-bit, tile {s['tile'][0]}x{s['tile'][1]}, batch {s['batch']}, "
          f"hadamard {s['hadamard'] or '-'}, {s['quant_sites']} quantized sites, opset {s['opset']}")
    return 0


def cmd_inspect(args) -> int:
    from .inspect import format_report, inspect_model

    r = inspect_model(args.model)
    print(json.dumps(r, indent=1) if args.json else format_report(r, args.layers))
    return 0


def cmd_check(args) -> int:
    from .trt_check import int8_layer_lines, parse_and_build

    from .inspect import load_onnx

    load_onnx(args.model, external_data=False)
    r = parse_and_build(args.model, register_plugin=args.plugin, build=not args.no_build,
                        verbose=args.verbose_log is not None, engine_out=args.engine, max_batch=args.max_batch)
    if args.verbose_log:
        args.verbose_log.write_text("\n".join(r.log) + "\n")
    print(json.dumps(r.summary(), indent=1))
    ok = r.parsed and (r.built or args.no_build)
    return 0 if ok else 1


def cmd_parity(args) -> int:
    from .parity import format_parity, run_parity

    res = run_parity(args.checkpoint, tuple(args.tile), args.dataset, args.data_root, onnx_path=args.onnx,
                     floor=not args.no_floor, site_check=not args.no_site_check)
    print(json.dumps(res, indent=1) if args.json else format_parity(res))
    return 0

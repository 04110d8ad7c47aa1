"""``compsrt export``, ``compsrt inspect``, ``compsrt export-check`` and ``compsrt export-parity``."""

from __future__ import annotations

import json
from pathlib import Path

from .args import DeprecatedAlias, add_json_flag, add_plugins_arg, add_tile_arg, existing, fmt_tile, positive_int

CHECKPOINT_FILE = existing("checkpoint", "pass SwinIR-light .pth weights or a checkpoint from `compsrt calibrate`")
ONNX_FILE = existing("ONNX model", "create it with `compsrt export`")


def _batch(value: str):
    """``--batch``: a positive integer, or ``dynamic`` (None)."""
    return None if value == "dynamic" else positive_int(value)


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export an FP or compressed (deploy-mode) checkpoint to ONNX for TensorRT")
    p.add_argument("--checkpoint", type=CHECKPOINT_FILE, required=True,
                   help="SwinIR-light .pth (FP) or a compressed checkpoint (.pt / .csrt from compsrt calibrate)")
    add_tile_arg(p, "static input tile in LR pixels, N or WxH, multiples of the window (8)", required=True)
    p.add_argument("--batch", type=_batch, default=1, help="fixed batch size or 'dynamic' (default 1)")
    p.add_argument("--hadamard", choices=("plugin", "matmul", "fused-quant"), default="plugin",
                   help="Hadamard as the TensorRT plugin node (TensorRT only), as a constant MatMul (standard ops: "
                        "ONNX Runtime and TensorRT without the plugin), or fused-quant: the plugin in its quantizing "
                        "mode, INT8 codes straight into each DequantizeLinear (TensorRT only) (default %(default)s)")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset, >= 17; raised to 21 when the graph has INT4 weights (default %(default)s)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="input/output dtype; internals: --internal-precision (default %(default)s)")
    p.add_argument("--weight-storage", choices=("auto", "int4", "int8"), default="auto",
                   help="storage of the weight codes: auto = INT4 for weights of <= 4 bits, per output channel "
                        "(opset 21), INT8 otherwise; int8 = INT8 containers for all (opset 17 parsers, e.g. older "
                        "TensorRT) (default %(default)s)")
    p.add_argument("--int4-block", type=int, choices=(64, 128), default=None,
                   help="INT4 weights in blocks of this size along K instead of per channel (same values; "
                        "TensorRT-RTX 1.7 fails to build more than one block per column next to INT8 activations) "
                        "(default: per channel)")
    p.add_argument("--activations", choices=("quantized", "fp"), default="quantized",
                   help="fp = weight-only: the checkpoint's activation quantizers are left out (no Q/DQ, no shifts), "
                        "TensorRT runs FP activations with the INT4 / INT8 weights: the smallest engine "
                        "(docs/export.md); not with --hadamard fused-quant (default %(default)s)")
    p.add_argument("--internal-precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="dtype of the unquantized operations (the quantized Linears' Q/DQ stay as they are): "
                        "bf16 = FP32's range, convs, LayerNorms and residual sums kept FP32 (measured); fp16 = all "
                        "in FP16, refused when the activation ranges come near 65,504 (default %(default)s)")
    p.add_argument("--ranges", type=existing("ranges file", "create it with `compsrt ranges`"), default=None,
                   help="activation ranges JSON from `compsrt ranges` for the FP16 guard (default: the ranges a "
                        "compressed checkpoint carries)")
    p.add_argument("--out", type=Path, required=True, help="output .onnx (sidecar JSON written next to it)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("inspect", help="summarise an exported ONNX graph (Q/DQ, Hadamards, precisions, weights)")
    p.add_argument("model", type=ONNX_FILE, help="ONNX model written by `compsrt export`")
    p.add_argument("--layers", action="store_true", help="list every MatMul/Conv with its operand dtypes")
    add_json_flag(p, "the summary")
    p.set_defaults(func=cmd_inspect)

    p = subparsers.add_parser("export-check", help="parse and build an exported ONNX with TensorRT(-RTX) (CPU is fine)")
    p.add_argument("model", type=ONNX_FILE, help="ONNX model written by `compsrt export`")
    add_plugins_arg(p, "none", "; graphs exported with --hadamard plugin or fused-quant need python or PATH")
    p.add_argument("--plugin", dest="plugins", action=DeprecatedAlias, new="--plugins python", const="python")
    p.add_argument("--no-build", action="store_true", help="parse only")
    p.add_argument("--max-batch", type=positive_int, default=4, help="profile maximum for a dynamic batch (default %(default)s)")
    p.add_argument("--verbose-log", type=Path, help="write the verbose TensorRT log here (default: not written)")
    p.add_argument("--engine", type=Path, help="also write the serialized engine here (default: not written)")
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser("export-parity", help="ONNX Runtime (matmul variant) vs the PyTorch deploy simulation on a benchmark")
    p.add_argument("--checkpoint", type=CHECKPOINT_FILE, required=True, help="compressed checkpoint (.pt / .csrt)")
    p.add_argument("--onnx", type=ONNX_FILE, help="exported matmul-variant ONNX (default: exported to a temporary file)")
    add_tile_arg(p, "LR tile, N or WxH (default 64x64)", default=(64, 64))
    p.add_argument("--dataset", default="Set5", help="benchmark set (default %(default)s)")
    p.add_argument("--benchmarks", type=existing("benchmarks folder", directory_ok=True), metavar="DIR",
                   help="folder holding the benchmark sets (default $COMPSRT_BENCHMARKS, else $COMPSRT_DATA/benchmarks)")
    p.add_argument("--data-root", dest="benchmarks", action=DeprecatedAlias, new="--benchmarks DIR",
                   type=existing("benchmarks folder", directory_ok=True))
    p.add_argument("--no-floor", action="store_true",
                   help="skip the PyTorch batch-8 vs batch-1 run (the simulation's own float noise floor)")
    p.add_argument("--no-site-check", action="store_true",
                   help="skip the site-by-site check (first tile, PyTorch forced to ONNX Runtime's codes)")
    add_json_flag(p, "the result")
    p.set_defaults(func=cmd_parity)


def cmd_export(args) -> int:
    from ..export.exporter import ExportOptions, export_checkpoint

    opts = ExportOptions(tile=tuple(args.tile), batch=args.batch, hadamard=args.hadamard, opset=args.opset,
                         io_dtype=args.precision, int4_block=args.int4_block, weights=args.weight_storage,
                         activations=args.activations, internal=args.internal_precision)
    res = export_checkpoint(args.checkpoint, args.out, opts, ranges=args.ranges)
    s = res.sidecar
    print(f"wrote {res.onnx_path} ({res.onnx_path.stat().st_size:,} bytes) and {res.sidecar_path}: x{s['scale']} "
          f"{s['mode']} {s['precision_label'] or str(s['bits']) + '-bit'}, tile {fmt_tile(s['tile'])}, batch {s['batch']}, "
          f"hadamard {s['hadamard'] or '-'}, {s['quant_sites']} quantized sites, opset {s['opset']}, "
          f"internal {s['precision']['internal']}")
    return 0


def cmd_inspect(args) -> int:
    from ..export.inspect import format_report, inspect_model

    r = inspect_model(args.model)
    print(json.dumps(r, indent=1) if args.json else format_report(r, args.layers))
    return 0


def cmd_check(args) -> int:
    from ..export.inspect import load_onnx
    from ..files import atomic_write_text
    from ..runtime.engine import parse_and_build, require_plugins

    load_onnx(args.model, external_data=False)
    require_plugins(args.model, args.plugins)
    r = parse_and_build(args.model, plugins=args.plugins, build=not args.no_build,
                        verbose=args.verbose_log is not None, engine_out=args.engine, max_batch=args.max_batch)
    if args.verbose_log:
        atomic_write_text(args.verbose_log, "\n".join(r.log) + "\n")
    print(json.dumps(r.summary(), indent=1))
    ok = r.parsed and (r.built or args.no_build)
    return 0 if ok else 1


def cmd_parity(args) -> int:
    from ..runtime.parity import format_parity, run_parity

    res = run_parity(args.checkpoint, tuple(args.tile), args.dataset, args.benchmarks, onnx_path=args.onnx,
                     floor=not args.no_floor, site_check=not args.no_site_check)
    print(json.dumps(res, indent=1) if args.json else format_parity(res))
    return 1 if res["verdict"]["pass"] is False else 0

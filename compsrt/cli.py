"""The ``compsrt`` command: a thin layer over the library, one subcommand per pipeline stage.

Each stage keeps its own subcommands in ``<stage>/cli.py`` with a ``register(subparsers)``
function; :data:`STAGE_CLIS` lists them. Errors a user can fix arrive as :class:`CompsrtError` and
are printed on one line (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .errors import CompsrtError

STAGE_CLIS: tuple[str, ...] = ("compsrt.runtime.cli", "compsrt.export.cli", "compsrt.calibration.cli",
                              "compsrt.runtime.serving.cli",)
DEFAULT_DATASETS = "Set5,Set14,B100"


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="upscaling factor (default 4)")
    p.add_argument("--weights", type=Path, help="SwinIR-light .pth (default: $COMPSRT_WEIGHTS_DIR, else download)")
    p.add_argument("--weights-sha256", metavar="HEX", help="refuse weights whose sha256 differs from this pin")
    p.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda, cuda:1, ...)")


def _eval_model(args: argparse.Namespace):
    """The FP model, or the fake-quant model of a compressed checkpoint (``--quant``), and its name."""
    if args.quant is None:
        from .models.weights import load_swinir

        return load_swinir(args.scale, args.weights, sha256=args.weights_sha256), f"swinir-light-x{args.scale}"
    from .calibration.checkpoint import load_compressed_model

    model, _ = load_compressed_model(args.quant)
    if model.config.scale != args.scale:
        raise CompsrtError(f"{args.quant} is a x{model.config.scale} checkpoint; pass --scale {model.config.scale}")
    return model, f"{args.quant.name} ({model.quant_config.tag})"


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.benchmark import bicubic_upscaler, evaluate_dataset
    from .paths import benchmarks_dir

    root = args.data_root or benchmarks_dir()
    if args.bicubic:
        upscale, name = bicubic_upscaler(args.scale), "bicubic"
    else:
        from .runtime.backends import TorchBackend
        from .runtime.upscaler import TiledUpscaler

        model, name = _eval_model(args)
        upscale = TiledUpscaler(TorchBackend(model, args.device), tile=0).upscale_array  # whole images
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    rows = []
    for dataset in datasets:
        score = evaluate_dataset(root, dataset, args.scale, upscale, name, progress=not args.json)
        rows.append(score)
        if args.json:
            print(json.dumps(score.summary()), flush=True)
    if not args.json:
        print(f"{'dataset':<8} {'scale':>5} {'PSNR':>8} {'SSIM':>7} {'n':>4} {'seconds':>8}  model")
        for r in rows:
            print(f"{r.dataset:<8} {r.scale:>5} {r.psnr:>8.4f} {r.ssim:>7.4f} {r.n:>4} {r.seconds:>8.1f}  {r.model}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compsrt", description="Compress SwinIR-light and deploy it with TensorRT.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("eval", help="score on Set5/Set14/B100 (Y-channel PSNR/SSIM, MATLAB conventions)")
    _add_weights_args(p)
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help=f"comma-separated (default {DEFAULT_DATASETS})")
    p.add_argument("--data-root", type=Path, help="folder holding the benchmark sets (default $COMPSRT_BENCHMARKS)")
    p.add_argument("--bicubic", action="store_true", help="score MATLAB bicubic upscaling instead of the model")
    p.add_argument("--quant", type=Path, metavar="CKPT", help="score a compressed checkpoint (.pt or .csrt)")
    p.add_argument("--json", action="store_true", help="print one JSON object per dataset")
    p.set_defaults(func=cmd_eval)

    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CompsrtError as exc:
        print(f"compsrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"compsrt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``compsrt eval``: Y-channel PSNR/SSIM of a model (FP, compressed or packed) or of bicubic on the benchmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CompsrtError

DEFAULT_DATASETS = "Set5,Set14,B100"


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="upscaling factor (default 4)")
    p.add_argument("--weights", type=Path, help="SwinIR-light .pth (default: $COMPSRT_WEIGHTS_DIR, else download)")
    p.add_argument("--weights-sha256", metavar="HEX", help="refuse weights whose sha256 differs from this pin")
    p.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda, cuda:1, ...)")


def _eval_model(args: argparse.Namespace):
    """The FP model (``--weights`` or the default), or the model of any ``--checkpoint`` file, and its name."""
    if args.checkpoint is None:
        from ..models.weights import load_swinir

        return load_swinir(args.scale, args.weights, sha256=args.weights_sha256), f"swinir-light-x{args.scale}"
    from ..calibration.checkpoint import load_model

    model, meta = load_model(args.checkpoint)
    if meta["scale"] != args.scale:
        raise CompsrtError(f"{args.checkpoint} is a x{meta['scale']} checkpoint; pass --scale {meta['scale']}")
    cfg = getattr(model, "quant_config", None)
    return model, f"{args.checkpoint.name} ({cfg.tag if cfg else 'fp'})"


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluation.benchmark import bicubic_upscaler, evaluate_dataset
    from ..paths import benchmarks_dir

    root = args.data_root or benchmarks_dir()
    if args.bicubic:
        upscale, name = bicubic_upscaler(args.scale), "bicubic"
    else:
        from ..runtime.backends import TorchBackend
        from ..runtime.upscaler import TiledUpscaler

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


def register(sub) -> None:
    p = sub.add_parser("eval", help="score on Set5/Set14/B100 (Y-channel PSNR/SSIM, MATLAB conventions)")
    _add_weights_args(p)
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help=f"comma-separated (default {DEFAULT_DATASETS})")
    p.add_argument("--data-root", type=Path, help="folder holding the benchmark sets (default $COMPSRT_BENCHMARKS)")
    p.add_argument("--bicubic", action="store_true", help="score MATLAB bicubic upscaling instead of the model")
    p.add_argument("--checkpoint", "--quant", dest="checkpoint", type=Path, metavar="CKPT",
                   help="score any model file: a compressed checkpoint (.pt), a pack (.csrt) or FP weights")
    p.add_argument("--json", action="store_true", help="print one JSON object per dataset")
    p.set_defaults(func=cmd_eval)


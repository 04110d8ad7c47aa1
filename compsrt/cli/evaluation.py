"""``compsrt eval``: Y-channel PSNR/SSIM of a model (FP, compressed or packed) or of bicubic on the benchmarks."""

from __future__ import annotations

import argparse
import json

from .args import DEVICE_HELP, DeprecatedAlias, add_json_flag, check_scale, existing

DEFAULT_DATASETS = "Set5,Set14,B100"


def _eval_model(args: argparse.Namespace):
    """The FP model (``--weights`` or the default), or the model of any ``--checkpoint`` file; its name and scale."""
    if args.checkpoint is None:
        from ..models.weights import load_swinir

        scale = args.scale or 4
        if args.weights is not None:
            from ..models.weights import read_state_dict, scale_of_state_dict

            scale = check_scale(args.scale, scale_of_state_dict(read_state_dict(args.weights)) or scale, args.weights)
        return load_swinir(scale, args.weights, sha256=args.weights_sha256), f"swinir-light-x{scale}", scale
    from ..calibration.checkpoint import load_model

    model, meta = load_model(args.checkpoint)
    scale = check_scale(args.scale, meta["scale"], args.checkpoint)
    cfg = getattr(model, "quant_config", None)
    return model, f"{args.checkpoint.name} ({cfg.tag if cfg else 'fp'})", scale


def cmd_eval(args: argparse.Namespace) -> int:
    from .args import resolve_device
    from ..evaluation.benchmark import bicubic_upscaler, evaluate_dataset
    from ..paths import benchmarks_dir

    root = args.benchmarks or benchmarks_dir()
    if args.bicubic:
        scale = args.scale or 4
        upscale, name = bicubic_upscaler(scale), "bicubic"
    else:
        from ..runtime.backends import TorchBackend
        from ..runtime.upscaler import TiledUpscaler

        model, name, scale = _eval_model(args)
        upscale = TiledUpscaler(TorchBackend(model, resolve_device(args.device)), tile=0).upscale_array  # whole images
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    rows = []
    for dataset in datasets:
        score = evaluate_dataset(root, dataset, scale, upscale, name, progress=not args.json)
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
    p.add_argument("--scale", type=int, choices=(2, 3, 4),
                   help="upscaling factor; must match --checkpoint's if given (default: the checkpoint's, else 4)")
    p.add_argument("--weights", type=existing("weights file", "pass an existing .pth file"),
                   help="SwinIR-light .pth (default: $COMPSRT_WEIGHTS_DIR, else download)")
    p.add_argument("--weights-sha256", metavar="HEX",
                   help="refuse weights whose sha256 differs from this pin (default: no pin)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help="comma-separated (default %(default)s)")
    p.add_argument("--benchmarks", type=existing("benchmarks folder", directory_ok=True), metavar="DIR",
                   help="folder holding the benchmark sets (default $COMPSRT_BENCHMARKS, else $COMPSRT_DATA/benchmarks)")
    p.add_argument("--data-root", dest="benchmarks", action=DeprecatedAlias, new="--benchmarks DIR",
                   type=existing("benchmarks folder", directory_ok=True))
    p.add_argument("--bicubic", action="store_true", help="score MATLAB bicubic upscaling instead of the model")
    p.add_argument("--checkpoint", "--quant", dest="checkpoint",
                   type=existing("checkpoint", "create one with `compsrt calibrate`"), metavar="CKPT",
                   help="score any model file: a compressed checkpoint (.pt), a pack (.csrt) or FP weights "
                        "(default: the FP model)")
    add_json_flag(p, "one object per dataset")
    p.set_defaults(func=cmd_eval)

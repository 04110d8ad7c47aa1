"""The ``compsrt`` command: a thin layer over the library, one subcommand per pipeline stage.

Each stage keeps its own subcommands in ``<stage>/cli.py`` with a ``register(subparsers)``
function; :data:`STAGE_CLIS` lists them and :data:`COMMAND_ORDER` is the order ``--help`` shows
(the pipeline's). The shared option vocabulary is :mod:`compsrt.cliargs`. Errors a user can fix
arrive as :class:`CompsrtError` (or an argparse error) and are printed on one line (exit status 2).
Nothing heavy (torch, onnx, TensorRT) is imported until a command runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import __version__
from .cliargs import DEVICE_HELP, DeprecatedAlias, Parser, add_json_flag, check_scale, existing, join_negative_values
from .errors import CompsrtError

STAGE_CLIS: tuple[str, ...] = ("compsrt.runtime.cli", "compsrt.export.cli", "compsrt.calibration.cli",)
COMMAND_ORDER = ("calibrate", "pack", "eval", "export", "inspect", "export-check", "export-parity", "build", "upscale",
                 "profile")  # then any other command in registration order, then:
COMMAND_LAST = ("selftest", "pipeline")
DEFAULT_DATASETS = "Set5,Set14,B100"


def _eval_model(args: argparse.Namespace):
    """The FP model, or the fake-quant model of a compressed checkpoint (``--quant``), its name and scale."""
    if args.quant is None:
        from .models.weights import load_swinir

        scale = args.scale or 4
        return load_swinir(scale, args.weights, sha256=args.weights_sha256), f"swinir-light-x{scale}", scale
    from .calibration.checkpoint import load_compressed_model

    model, _ = load_compressed_model(args.quant)
    scale = check_scale(args.scale, model.config.scale, args.quant)
    return model, f"{args.quant.name} ({model.quant_config.tag})", scale


def cmd_eval(args: argparse.Namespace) -> int:
    from .cliargs import resolve_device
    from .evaluation.benchmark import bicubic_upscaler, evaluate_dataset
    from .paths import benchmarks_dir

    root = args.benchmarks or benchmarks_dir()
    if args.bicubic:
        scale = args.scale or 4
        upscale, name = bicubic_upscaler(scale), "bicubic"
    else:
        from .runtime.backends import TorchBackend
        from .runtime.upscaler import TiledUpscaler

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


def _register_eval(sub) -> None:
    p = sub.add_parser("eval", help="score on Set5/Set14/B100 (Y-channel PSNR/SSIM, MATLAB conventions)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4),
                   help="upscaling factor (default: the --quant checkpoint's, else 4)")
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
    p.add_argument("--quant", type=existing("compressed checkpoint", "create one with `compsrt calibrate`"),
                   metavar="CKPT", help="score a compressed checkpoint (.pt or .csrt) (default: the FP model)")
    add_json_flag(p, "one object per dataset")
    p.set_defaults(func=cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="compsrt", description="Compress SwinIR-light and deploy it with TensorRT. "
                    "`compsrt COMMAND --help` lists a command's options and their defaults.")
    parser.add_argument("--version", action="version", version=f"compsrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (in pipeline order)")
    _register_eval(sub)
    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    rank.update({name: len(COMMAND_ORDER) + 1000 + i for i, name in enumerate(COMMAND_LAST)})
    shown = sub._choices_actions  # the help listing; argparse keeps it in registration order
    registered = {a.dest: i for i, a in enumerate(shown)}
    shown.sort(key=lambda a: rank.get(a.dest, len(COMMAND_ORDER) + registered[a.dest]))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version: 0, raised on; a usage error (already printed): 2
        if exc.code:
            return int(exc.code)
        raise
    if args.command is None:
        parser.print_help()
        return 0
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

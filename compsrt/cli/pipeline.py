"""``compsrt pipeline``: the whole job on the embedded default (see :mod:`compsrt.pipeline`)."""

from __future__ import annotations

from pathlib import Path

from .args import DEVICE_HELP, add_tile_arg, existing, positive_int


def cmd_pipeline(args) -> int:
    from dataclasses import fields

    from ..pipeline import PipelineOptions, run_pipeline

    return run_pipeline(PipelineOptions(**{f.name: getattr(args, f.name) for f in fields(PipelineOptions)}))


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="the whole job on the bundled sample: calibrate, export, ORT, build, profile")
    p.add_argument("--out", type=Path, default=Path("outputs/pipeline"), help="output folder (default %(default)s)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="upscaling factor (default %(default)s)")
    p.add_argument("--iters", type=positive_int, default=50, help="calibration iterations (default %(default)s)")
    p.add_argument("--calib-seconds", type=float, default=150,
                   help="wall-clock budget of the whole calibration, DOBI ranges included (default %(default)s s)")
    p.add_argument("--patch", type=positive_int, default=16, help="calibration patch size in LR pixels (default %(default)s)")
    p.add_argument("--train-images", type=positive_int, default=3,
                   help="training images used for calibration (default %(default)s)")
    p.add_argument("--eval-images", type=int, default=2,
                   help="smallest Set5 images scored against ground truth (default %(default)s)")
    p.add_argument("--profile-iters", type=positive_int, default=3, help="timed profile iterations (default %(default)s)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP.replace("torch device", "calibration device"))
    add_tile_arg(p, "square LR tile of the export (default %(default)s)", default=64, square=True)
    p.add_argument("--image", type=existing("image"), help="input image (default: the bundled sample)")
    p.set_defaults(func=cmd_pipeline)

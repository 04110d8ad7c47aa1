"""``compsrt pipeline``: the whole job on the embedded default (see :mod:`compsrt.pipeline`)."""

from __future__ import annotations

from pathlib import Path


def cmd_pipeline(args) -> int:
    from dataclasses import fields

    from ..pipeline import PipelineOptions, run_pipeline

    return run_pipeline(PipelineOptions(**{f.name: getattr(args, f.name) for f in fields(PipelineOptions)}))


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="the whole job on the bundled sample: calibrate, export, ORT, build, profile")
    p.add_argument("--out", type=Path, default=Path("outputs/pipeline"))
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    p.add_argument("--iters", type=int, default=50, help="calibration iterations (default 50)")
    p.add_argument("--calib-seconds", type=float, default=150,
                   help="wall-clock budget of the whole calibration, DOBI ranges included (default 150 s)")
    p.add_argument("--patch", type=int, default=16, help="calibration patch size in LR pixels (default 16)")
    p.add_argument("--train-images", type=int, default=3, help="training images used for calibration (default 3)")
    p.add_argument("--eval-images", type=int, default=2, help="smallest Set5 images scored against ground truth (default 2)")
    p.add_argument("--profile-iters", type=int, default=3)
    p.add_argument("--device", default="auto", help="calibration device (auto, cpu, cuda)")
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--image", type=Path, help="input image (default: the bundled sample)")
    p.set_defaults(func=cmd_pipeline)

"""Runtime subcommands: upscale, build, profile, selftest, pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CompsrtError


def add_backend_args(p: argparse.ArgumentParser, engine: bool = True) -> None:
    g = p.add_argument_group("model (one of; default: the FP SwinIR-light weights)")
    if engine:
        g.add_argument("--engine", type=Path, help="TensorRT engine built by `compsrt build`")
    g.add_argument("--onnx", type=Path, help="ONNX model (ONNX Runtime)")
    g.add_argument("--checkpoint", type=Path, help="compressed checkpoint from `compsrt calibrate` (torch fake-quant)")
    g.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="FP model scale (default 4)")
    g.add_argument("--weights", type=Path, help="SwinIR-light .pth (default: $COMPSRT_WEIGHTS_DIR, else download)")
    g.add_argument("--weights-sha256", metavar="HEX", help="refuse weights whose sha256 differs from this pin")
    g.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    g.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="torch autocast precision")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--providers", choices=("cpu", "cuda"), default="cpu", help="ONNX Runtime execution provider")
    t = p.add_argument_group("tiling")
    t.add_argument("--tile", type=int, help="LR tile size (fixed for ONNX/engines; default 256 for torch, 0 = whole image)")
    t.add_argument("--overlap", type=int, default=16, help="LR pixels shared by neighbouring tiles (default 16)")
    t.add_argument("--margin", type=int, help="LR pixels at internal tile edges never used (default overlap/4)")
    t.add_argument("--batch", type=int, help="tiles per batch (default 4, or the engine's batch)")


def make_backend(args):
    from . import backends

    chosen = [n for n in ("engine", "onnx", "checkpoint") if getattr(args, n, None)]
    if len(chosen) > 1:
        raise CompsrtError(f"pass only one of --engine, --onnx, --checkpoint (got {', '.join('--' + c for c in chosen)})")
    if getattr(args, "engine", None):
        from .engine import TrtBackend

        return TrtBackend(args.engine)
    if args.onnx:
        return backends.OrtBackend(args.onnx, args.providers)
    if args.checkpoint:
        return backends.torch_checkpoint_backend(args.checkpoint, args.device, args.dtype, args.compile)
    return backends.torch_fp_backend(args.scale, args.weights, args.device, args.dtype, args.compile,
                                     sha256=getattr(args, "weights_sha256", None))


def make_upscaler(args, backend, progress=False):
    from .upscaler import TiledUpscaler

    return TiledUpscaler(backend, tile=args.tile, overlap=args.overlap, margin=args.margin, batch=args.batch,
                         progress=progress)


def cmd_upscale(args) -> int:
    from tqdm.auto import tqdm

    from ..encoding import options_from_args
    from .upscaler import list_images

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise CompsrtError(f"input {src} does not exist")
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise CompsrtError(f"{dst} is a file; the output for a directory of images must be a directory")
        pairs = [(f, dst / (f.stem + (args.ext or f.suffix))) for f in list_images(src)]
    else:
        if dst.is_dir():
            dst = dst / src.name
        pairs = [(src, dst)]
    encode = options_from_args(args)
    if args.server:
        from .serving.client import upscale_files

        results = upscale_files(args.server, pairs, encode, args.max_pixels, workers=args.workers)
    else:
        from .pipelined import PipelinedUpscaler

        backend = make_backend(args)
        up = make_upscaler(args, backend, progress=len(pairs) == 1)
        results = PipelinedUpscaler(up, host_workers=args.workers, encode=encode, max_pixels=args.max_pixels).run(pairs)
    failed = 0
    bar = tqdm(total=len(pairs), desc="upscale", unit="img", disable=len(pairs) == 1)
    for r in results:  # input order
        bar.update(1)
        if not r.ok:
            if len(pairs) == 1:
                raise CompsrtError(r.error)
            failed += 1
            tqdm.write(f"compsrt upscale: skipped: {r.error}", file=sys.stderr)
            continue
        msg = f"{r.src} ({r.in_size[0]}x{r.in_size[1]}, {r.mode}) -> {r.dst} ({r.out_size[0]}x{r.out_size[1]})"
        tqdm.write(msg) if len(pairs) > 1 else print(msg)
    bar.close()
    if not args.server:
        backend.close()
    if failed:
        print(f"compsrt upscale: {failed} of {len(pairs)} images failed", file=sys.stderr)
        return 2
    return 0


def cmd_build(args) -> int:
    from .engine import build_engine

    r = build_engine(args.onnx, args.out, sparse=args.sparse, plugins=args.plugins, timing_cache=args.timing_cache,
                     workspace_mb=args.workspace, batch=args.batch, tile=args.tile,
                     compute_capability=args.compute_capability)
    m = r.sidecar
    print(f"{args.out}: {m['engine_bytes']:,} bytes, {m['tensorrt']['module']} {m['tensorrt']['version']}, "
          f"input {'x'.join(map(str, m['input_shape']))} x{m['scale']}, sparse={m['sparse_weights']}, "
          f"plugin={m['plugin']['kind']}, device={m['device']['name'] or 'none (CPU build)'}, {r.seconds:.1f} s")
    print(f"  sidecar {args.out}.json, log {args.out}.build.log, layers {args.out}.layers.json")
    return 0


def cmd_profile(args) -> int:
    from . import profile

    if args.compare:
        print(profile.compare_text(*args.compare))
        return 0
    return profile.run_cli(args)


def cmd_selftest(args) -> int:
    from .selftest import selftest

    return selftest(tile=args.tile, scale=args.scale, keep=args.keep, plugins=args.plugins)


def cmd_pipeline(args) -> int:
    from .pipeline import run_pipeline

    return run_pipeline(args)


def register(sub) -> None:
    p = sub.add_parser("upscale", help="upscale an image or a directory (torch, ONNX Runtime or TensorRT; tiled)")
    p.add_argument("input", type=Path, help="image file or directory")
    p.add_argument("output", type=Path, help="output file, or directory for a directory input")
    add_backend_args(p)
    p.add_argument("--ext", help="output extension for directory inputs (default: the input's)")
    p.add_argument("--max-pixels", type=int, help="refuse inputs above this many pixels (default $COMPSRT_MAX_PIXELS or 64e6)")
    p.add_argument("--server", metavar="URL", help="upscale on a Triton server (`compsrt serve`): http://HOST:PORT or grpc://HOST:PORT")
    p.add_argument("--workers", type=int, help="host threads for decode/encode (default: CPU count, at most 8)")
    from ..encoding import add_encode_args

    add_encode_args(p)
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("build", help="build a TensorRT engine (tensorrt, else tensorrt_rtx) from an exported ONNX")
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="engine file (sidecar, log and layer info written beside)")
    p.add_argument("--sparse", action="store_true", help="enable SPARSE_WEIGHTS (automatic when 2:4 weights are found)")
    p.add_argument("--plugins", default="python", help="python (register the Python plugin), none, or path to libcompsrt_plugins.so")
    p.add_argument("--timing-cache", type=Path, help="timing cache file (read if present, updated after the build)")
    p.add_argument("--workspace", type=int, help="workspace limit in MB")
    p.add_argument("--batch", type=int, help="batch for graphs with a dynamic batch dim (default 1)")
    p.add_argument("--tile", type=int, help="tile for graphs with dynamic spatial dims")
    p.add_argument("--compute-capability", help="TensorRT-RTX only: target, e.g. SM89 (default: its own default)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("profile", help="per-stage and end-to-end latency, throughput and memory of one backend")
    p.add_argument("--backend", choices=("trt", "onnxruntime", "torch"), default="torch")
    add_backend_args(p)
    p.add_argument("--size", default="320x180", help="input WxH (default 320x180)")
    p.add_argument("--image", type=Path, help="source image resized to --size (default: the bundled sample)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", type=Path, help="write the profile as JSON")
    p.add_argument("--plot", type=Path, help="write a PNG chart of the stage breakdown")
    p.add_argument("--label", help="name for this profile (default: backend and settings)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"), help="print B/A ratios and exit")
    p.add_argument("--mode", choices=("latency", "throughput"), default="latency",
                   help="latency: one image at a time, per stage; throughput: a folder of --iters images through the "
                        "pipelined path against compute-only and the sequential path")
    from ..encoding import add_encode_args

    add_encode_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("selftest", help="verify this machine: build a small engine, compare TensorRT with ONNX Runtime")
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)
    p.add_argument("--plugins", default="python")
    p.add_argument("--keep", type=Path, help="keep the ONNX model and engine in this folder")
    p.set_defaults(func=cmd_selftest)

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

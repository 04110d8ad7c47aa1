"""Runtime subcommands: upscale, build, profile, selftest."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import CompsrtError


def add_backend_args(p: argparse.ArgumentParser, engine: bool = True) -> None:
    g = p.add_argument_group("model (one of; default: the FP SwinIR-light weights)")
    if engine:
        g.add_argument("--engine", type=Path, help="TensorRT engine built by `compsrt build`")
    g.add_argument("--onnx", type=Path, help="ONNX model (ONNX Runtime)")
    g.add_argument("--checkpoint", type=Path,
                   help="any model file for torch: compressed checkpoint (.pt), pack (.csrt) or FP weights")
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
    from ..runtime.backends import open_backend

    return open_backend(engine=getattr(args, "engine", None), onnx=args.onnx, checkpoint=args.checkpoint,
                        weights=args.weights, scale=args.scale, device=args.device, dtype=args.dtype,
                        compile=args.compile, providers=args.providers, weights_sha256=args.weights_sha256)


def make_upscaler(args, backend, progress=False):
    from ..runtime.upscaler import TiledUpscaler

    return TiledUpscaler(backend, tile=args.tile, overlap=args.overlap, margin=args.margin, batch=args.batch,
                         progress=progress)


def _report_upscales(results, pairs) -> int:
    """Print each result in input order (a single image's failure raises); the number of skipped images."""
    from tqdm.auto import tqdm

    failed = 0
    bar = tqdm(total=len(pairs), desc="upscale", unit="img", disable=len(pairs) == 1)
    for r in results:
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
    return failed


def cmd_upscale(args) -> int:
    from ..encoding import options_from_args
    from ..runtime.upscaler import list_images

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
        from ..runtime.serving.client import upscale_files

        failed = _report_upscales(upscale_files(args.server, pairs, encode, args.max_pixels, workers=args.workers), pairs)
    else:
        from ..runtime.pipelined import PipelinedUpscaler

        with make_backend(args) as backend:
            up = make_upscaler(args, backend, progress=len(pairs) == 1)
            pipe = PipelinedUpscaler(up, host_workers=args.workers, encode=encode, max_pixels=args.max_pixels)
            failed = _report_upscales(pipe.run(pairs), pairs)
    if failed:
        print(f"compsrt upscale: {failed} of {len(pairs)} images failed", file=sys.stderr)
        return 2
    return 0


def cmd_build(args) -> int:
    from ..runtime.engine import build_engine

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
    from ..files import atomic_write_text
    from ..runtime import profile

    if args.compare:
        print(profile.compare_text(*args.compare))
        return 0
    size = profile.parse_size(args.size)
    if args.backend == "trt" and not args.engine:
        raise CompsrtError("--backend trt needs --engine ENGINE.plan (build one with `compsrt build`)")
    if args.backend == "onnxruntime" and not args.onnx:
        raise CompsrtError("--backend onnxruntime needs --onnx MODEL.onnx")
    if args.backend == "torch" and (args.engine or args.onnx):
        raise CompsrtError("--backend torch takes --checkpoint or the FP weights, not --engine/--onnx")
    with make_backend(args) as backend:
        up = make_upscaler(args, backend)
        if args.mode == "throughput":
            from ..encoding import options_from_args
            from ..runtime.pipelined import throughput_profile, throughput_text

            r = throughput_profile(up, size, images=args.iters, source=args.image, encode=options_from_args(args),
                                   warmup=args.warmup)
            r |= {"label": args.label or backend.describe().get("label") or backend.name, "backend": backend.describe(),
                  "machine": profile.machine_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        else:
            p = profile.profile(up, size, args.iters, args.warmup, args.image, args.label)
    if args.mode == "throughput":
        print(throughput_text(r))
        if args.json:
            atomic_write_text(args.json, json.dumps(r, indent=1))
            print(f"wrote {args.json}")
        return 0
    print(profile.summary_text(p))
    if args.json:
        atomic_write_text(args.json, json.dumps(p, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        profile.plot([p], args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_selftest(args) -> int:
    from ..runtime.selftest import selftest

    return selftest(tile=args.tile, scale=args.scale, keep=args.keep, plugins=args.plugins)


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

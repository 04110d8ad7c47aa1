"""Runtime subcommands: upscale, build, profile, selftest."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path

from ..progress import Spinner
from .args import (DEVICE_HELP, add_json_flag, add_plugins_arg, add_tile_arg, check_scale, existing, fmt_tile,
                   positive_int, resolve_device, size_arg)
from ..errors import CompsrtError

ONNX_FILE = existing("ONNX model", "create it with `compsrt export`")
ENGINE_FILE = existing("engine", "build it with `compsrt build --onnx MODEL.onnx --out ENGINE.plan`")
CHECKPOINT_FILE = existing("checkpoint", "create one with `compsrt calibrate`")
WEIGHTS_FILE = existing("weights file", "pass an existing .pth file with --weights")
FILE_CHECKS = {"engine": ENGINE_FILE, "onnx": ONNX_FILE, "checkpoint": CHECKPOINT_FILE, "weights": WEIGHTS_FILE}


def add_backend_args(p: argparse.ArgumentParser, engine: bool = True) -> None:
    g = p.add_argument_group("model (one of; default: the FP SwinIR-light weights)")
    if engine:
        g.add_argument("--engine", type=Path, metavar="PLAN", help="TensorRT engine built by `compsrt build` (default: none)")
    g.add_argument("--onnx", type=Path, metavar="MODEL.onnx", help="ONNX model run by ONNX Runtime (default: none)")
    g.add_argument("--checkpoint", type=Path, metavar="CKPT",
                   help="any model file for torch: compressed checkpoint (.pt), pack (.csrt) or FP weights (default: none)")
    g.add_argument("--scale", type=int, choices=(2, 3, 4),
                   help="upscaling factor; must match the model's if one is given (default: the model's, else 4)")
    g.add_argument("--weights", type=Path, metavar="PTH", help="SwinIR-light .pth (default: $COMPSRT_WEIGHTS_DIR, else download)")
    g.add_argument("--weights-sha256", metavar="HEX", help="refuse weights whose sha256 differs from this pin (default: no pin)")
    g.add_argument("--device", default="auto", help=DEVICE_HELP)
    g.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="torch autocast precision (default %(default)s)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--cuda-graph", action="store_true",
                   help="torch on CUDA: capture one CUDA graph per tile-batch shape and replay it (default: off)")
    g.add_argument("--providers", choices=("cpu", "cuda"), default="cpu",
                   help="ONNX Runtime execution provider (default %(default)s)")
    t = p.add_argument_group("tiling")
    add_tile_arg(t, "LR tile, fixed for ONNX/engines; 0 = the whole image at once (default: the model's tile, "
                    "else 256 for torch)", whole=True)
    t.add_argument("--overlap", type=int, default=16, help="LR pixels shared by neighbouring tiles (default %(default)s)")
    t.add_argument("--margin", type=int, help="LR pixels at internal tile edges never used (default: overlap/4)")
    t.add_argument("--batch", type=positive_int, help="tiles per batch (default: the engine's batch, else 4)")


def make_backend(args):
    """The one backend named by --engine / --onnx / --checkpoint / --weights; --scale must agree with it."""
    chosen = [n for n in ("engine", "onnx", "checkpoint") if getattr(args, n, None)]
    if len(chosen) > 1:
        raise CompsrtError(f"pass only one of --engine, --onnx, --checkpoint (got {', '.join('--' + c for c in chosen)})")
    for name, path in [(n, getattr(args, n)) for n in chosen] + [("weights", getattr(args, "weights", None))]:
        if path is not None:  # before onnxruntime/torch/TensorRT are imported: a typo is refused at once
            FILE_CHECKS[name](str(path))
    from ..runtime.backends import open_backend

    scale = args.scale or 4
    if not chosen and args.weights is not None:
        from ..models.weights import read_state_dict, scale_of_state_dict

        scale = check_scale(args.scale, scale_of_state_dict(read_state_dict(args.weights)) or scale, args.weights)
    device = resolve_device(args.device) if not (getattr(args, "engine", None) or args.onnx) else "cpu"
    b = open_backend(engine=getattr(args, "engine", None), onnx=args.onnx, checkpoint=args.checkpoint,
                     weights=args.weights, scale=scale, device=device, dtype=args.dtype, compile=args.compile,
                     providers=args.providers, weights_sha256=args.weights_sha256,
                     cuda_graph=getattr(args, "cuda_graph", False))
    if chosen:
        try:
            check_scale(args.scale, b.scale, getattr(args, chosen[0]))
        except CompsrtError:
            b.close()
            raise
    return b


def make_upscaler(args, backend, progress=False):
    from ..runtime.upscaler import TiledUpscaler

    return TiledUpscaler(backend, tile=args.tile, overlap=args.overlap, margin=args.margin, batch=args.batch,
                         progress=progress)


def _report_upscales(results, pairs, quiet: bool) -> tuple[list, list]:
    """Print each result in input order (a single image's failure raises); (done, skipped) for the summary.
    Images given up on an interrupt are neither: they were not written."""
    from tqdm.auto import tqdm

    done, skipped = [], []
    bar = tqdm(total=len(pairs), desc="upscale", unit="img", disable=len(pairs) == 1 or quiet)
    for r in results:
        bar.update(1)
        if r.interrupted:
            continue
        if not r.ok:
            if len(pairs) == 1:
                raise CompsrtError(r.error)
            skipped.append({"input": str(r.src), "error": r.error})
            tqdm.write(f"compsrt upscale: skipped: {r.error}", file=sys.stderr)
            continue
        done.append({"input": str(r.src), "output": str(r.dst), "input_size": list(r.in_size),
                     "output_size": list(r.out_size), "mode": r.mode})
        if not quiet:
            msg = f"{r.src} ({r.in_size[0]}x{r.in_size[1]}, {r.mode}) -> {r.dst} ({r.out_size[0]}x{r.out_size[1]})"
            tqdm.write(msg) if len(pairs) > 1 else print(msg)
    bar.close()
    return done, skipped


class _StopEvent(threading.Event):
    """A stop flag that also calls ``on_set`` (the pipeline's own stop) when set."""

    on_set = None

    def set(self) -> None:
        super().set()
        if self.on_set is not None:
            self.on_set()


@contextlib.contextmanager
def _stop_on_ctrl_c():
    """The first Ctrl-C sets the yielded event (no new image starts; those in flight finish or give up), a
    second one interrupts at once. Outside the main thread (no signals there) the event is only yielded."""
    stop = _StopEvent()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        print("compsrt upscale: stopping: no new image starts (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_upscale(args) -> int:
    from ..encoding import options_from_args
    from ..runtime.upscaler import list_images

    src, dst = Path(args.input), Path(args.output)
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise CompsrtError(f"{dst} is a file; the output for a directory of images must be a directory")
        pairs = [(f, dst / (f.stem + (args.ext or f.suffix))) for f in list_images(src)]
    else:
        if dst.is_dir():
            dst = dst / src.name
        pairs = [(src, dst)]
    t0 = time.perf_counter()
    encode = options_from_args(args)
    with _stop_on_ctrl_c() as stop:
        if args.server:
            from ..runtime.serving.client import upscale_files

            describe = {"server": args.server}
            done, skipped = _report_upscales(upscale_files(args.server, pairs, encode, args.max_pixels,
                                                           workers=args.workers, stop=stop), pairs, args.json)
            tile = None
        else:
            from ..runtime.pipelined import PipelinedUpscaler

            with make_backend(args) as backend:
                up = make_upscaler(args, backend, progress=len(pairs) == 1 and not args.json)
                pipe = PipelinedUpscaler(up, host_workers=args.workers, encode=encode, max_pixels=args.max_pixels)
                stop.on_set = pipe.stop
                done, skipped = _report_upscales(pipe.run(pairs), pairs, args.json)
                describe, tile = backend.describe(), up.tile
    if args.json:
        print(json.dumps({"outputs": done, "failed": len(skipped), "skipped": skipped, "backend": describe,
                          "tile": fmt_tile(tile) if tile else "whole image" if not args.server else "server",
                          "interrupted": stop.is_set(), "seconds": round(time.perf_counter() - t0, 3)}))
    if stop.is_set():
        print(f"compsrt upscale: interrupted: {len(done)} of {len(pairs)} images written"
              + (" (listed above)" if done and not args.json else ""), file=sys.stderr)
        return 130
    if skipped:
        print(f"compsrt upscale: {len(skipped)} of {len(pairs)} images failed", file=sys.stderr)
        return 2
    return 0


def cmd_build(args) -> int:
    from ..runtime.engine import build_engine

    with Spinner(f"building {args.out.name} from {args.onnx.name} (TensorRT's builder; about a minute for SwinIR-light)",
                 enabled=not args.json):
        r = build_engine(args.onnx, args.out, sparse=args.sparse, plugins=args.plugins, timing_cache=args.timing_cache,
                         workspace_mb=args.workspace, batch=args.batch, tile=args.tile,
                         compute_capability=args.compute_capability)
    m = r.sidecar
    files = {"sidecar": f"{args.out}.json", "log": f"{args.out}.build.log", "layers": f"{args.out}.layers.json"}
    if args.json:
        print(json.dumps({"engine": str(args.out), "engine_bytes": m["engine_bytes"], "seconds": round(r.seconds, 3),
                          "tensorrt": m["tensorrt"], "input_shape": m["input_shape"], "tile": m["tile"] and fmt_tile(m["tile"]),
                          "scale": m["scale"], "sparse_weights": m["sparse_weights"], "plugin": m["plugin"]["kind"],
                          "device": m["device"], **files}, indent=1))
        return 0
    b, _, th, tw = m["input_shape"] if len(m["input_shape"]) == 4 else (m["input_shape"][0], None, None, None)
    shape = f"batch {b} x {tw}x{th}" if th else "x".join(map(str, m["input_shape"]))
    print(f"{args.out}: {m['engine_bytes']:,} bytes, {m['tensorrt']['module']} {m['tensorrt']['version']}, "
          f"input {shape}{' x' + str(m['scale']) if m['scale'] else ''}, sparse={m['sparse_weights']}, "
          f"plugin={m['plugin']['kind']}, device={m['device']['name'] or 'none (CPU build)'}, {r.seconds:.1f} s")
    print(f"  sidecar {files['sidecar']}, log {files['log']}, layers {files['layers']}")
    return 0


def _fp_reference(args, backend, p: dict) -> dict:
    """``profile --fp-reference``: the FP model timed the same way (same runtime, tile, input, iterations):
    for ONNX Runtime an FP graph of the same tile exported into a temporary folder, for torch the FP weights."""
    import tempfile
    from argparse import Namespace

    from ..runtime import profile

    if args.backend == "trt":
        raise CompsrtError("--fp-reference times ONNX Runtime or torch; for TensorRT, build the FP engine (`compsrt "
                           "export --checkpoint FP.pth` then `compsrt build`) and profile both engines")
    if (args.backend == "torch" and not args.checkpoint) or getattr(backend, "meta", {}).get("mode") == "fp":
        raise CompsrtError("--fp-reference compares a compressed model with the FP one; this model is FP already")
    with tempfile.TemporaryDirectory(prefix="compsrt-fp-reference-") as tmp:
        ref = Namespace(**vars(args))
        ref.checkpoint = None
        if args.backend == "onnxruntime":
            from ..export.exporter import ExportOptions, export_checkpoint
            from ..models.weights import resolve_weights

            ref.onnx = Path(tmp) / "fp.onnx"
            io = "fp16" if backend.meta.get("input", {}).get("dtype") == "float16" else "fp32"
            export_checkpoint(resolve_weights(backend.scale, args.weights), ref.onnx,
                              ExportOptions(tile=backend.tile, batch=backend.batch, io_dtype=io))
        with make_backend(ref) as fp_backend:
            fp = profile.profile(make_upscaler(ref, fp_backend), args.size, args.iters, args.warmup, args.image,
                                 "FP reference", progress=not args.json)
    return profile.fp_comparison(p, fp)


def cmd_profile(args) -> int:
    from ..files import atomic_write_text
    from ..runtime import profile

    if args.compare:
        print(profile.compare_text(*args.compare))
        return 0
    if args.backend == "trt" and not args.engine:
        raise CompsrtError("--backend trt needs --engine ENGINE.plan (build one with `compsrt build`)")
    if args.backend == "onnxruntime" and not args.onnx:
        raise CompsrtError("--backend onnxruntime needs --onnx MODEL.onnx")
    if args.backend == "torch" and (args.engine or args.onnx):
        raise CompsrtError("--backend torch takes --checkpoint or the FP weights, not --engine/--onnx")
    if args.warmup < 0:
        raise CompsrtError(f"--warmup must be >= 0, got {args.warmup}")
    with make_backend(args) as backend:
        up = make_upscaler(args, backend)
        if args.mode == "throughput":
            from ..encoding import options_from_args
            from ..runtime.pipelined import throughput_profile, throughput_text

            p = throughput_profile(up, args.size, images=args.iters, source=args.image, encode=options_from_args(args),
                                   warmup=args.warmup)
            p |= {"label": args.label or backend.describe().get("label") or backend.name, "backend": backend.describe(),
                  "machine": profile.machine_info(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        else:
            p = profile.profile(up, args.size, args.iters, args.warmup, args.image, args.label, progress=not args.json)
            if args.fp_reference:
                p["fp_reference"] = _fp_reference(args, backend, p)
    wrote = []
    if args.out:
        atomic_write_text(args.out, json.dumps(p, indent=1))
        wrote.append(args.out)
    if args.mode == "throughput":
        print(json.dumps(p, indent=1) if args.json else throughput_text(p))
        for w in [] if args.json else wrote:
            print(f"wrote {w}")
        return 0
    if args.plot:
        profile.plot([p], args.plot)
        wrote.append(args.plot)
    if args.json:
        print(json.dumps(p, indent=1))
    else:
        print(profile.summary_text(p))
        if not args.fp_reference and (args.checkpoint or p["backend"].get("mode") not in (None, "fp")):
            print("  not compared with the FP model: --fp-reference times it the same way beside this one")
        for w in wrote:
            print(f"wrote {w}")
    return 0


def cmd_selftest(args) -> int:
    from ..runtime.selftest import selftest

    return selftest(tile=args.tile, scale=args.scale, keep=args.keep, plugins=args.plugins)


class _JsonOrPath(argparse.Action):
    """profile ``--json``: a flag (print JSON); ``--json PATH``, the old spelling, writes PATH (use --out)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is None:
            namespace.json = True
            return
        from .args import deprecated

        deprecated(f"--json {values}", f"--out {values}")
        namespace.out = Path(values)


def register(sub) -> None:
    p = sub.add_parser("upscale", help="upscale an image or a directory (torch, ONNX Runtime or TensorRT; tiled)")
    p.add_argument("input", type=existing("input", directory_ok=True), help="image file or directory of images")
    p.add_argument("output", type=Path, help="output file, or directory for a directory input")
    add_backend_args(p)
    p.add_argument("--ext", help="output extension for directory inputs, e.g. .png (default: the input's)")
    p.add_argument("--max-pixels", type=positive_int,
                   help="refuse inputs above this many pixels (default $COMPSRT_MAX_PIXELS, else 64000000)")
    p.add_argument("--server", metavar="URL",
                   help="upscale on a Triton server (`compsrt serve`): http://HOST:PORT or grpc://HOST:PORT (default: in-process)")
    p.add_argument("--workers", type=positive_int, help="host threads for decode/encode (default: CPU count, at most 8)")
    add_json_flag(p, "a summary (files, sizes, backend, seconds)")
    from ..encoding import add_encode_args

    add_encode_args(p)
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("build", help="build a TensorRT engine (tensorrt, else tensorrt_rtx) from an exported ONNX")
    p.add_argument("--onnx", type=ONNX_FILE, required=True, help="ONNX model written by `compsrt export`")
    p.add_argument("--out", type=Path, required=True, help="engine file (sidecar, log and layer info written beside)")
    p.add_argument("--sparse", action="store_true", help="enable SPARSE_WEIGHTS (automatic when 2:4 weights are found)")
    add_plugins_arg(p, "python")
    p.add_argument("--timing-cache", type=Path,
                   help="timing cache file, read if present and updated after the build (default: none)")
    p.add_argument("--workspace", type=positive_int, metavar="MB", help="workspace limit in MB (default: TensorRT's)")
    p.add_argument("--batch", type=positive_int, help="batch for graphs with a dynamic batch dim (default 1)")
    add_tile_arg(p, "tile for graphs with dynamic spatial dims (default: the ONNX sidecar's)")
    p.add_argument("--compute-capability", metavar="SMxy",
                   help="TensorRT-RTX only: target, e.g. SM89 (default: TensorRT-RTX's own)")
    add_json_flag(p, "a summary of the engine and the files written")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("profile", help="per-stage and end-to-end latency, throughput and memory of one backend")
    p.add_argument("--backend", choices=("trt", "onnxruntime", "torch"), default="torch",
                   help="what runs the model: trt (--engine), onnxruntime (--onnx) or torch (default %(default)s)")
    add_backend_args(p)
    p.add_argument("--size", type=size_arg, default=(320, 180), metavar="WxH", help="input size (default 320x180)")
    p.add_argument("--image", type=existing("image"), help="source image resized to --size (default: the bundled sample)")
    p.add_argument("--iters", type=positive_int, default=20, help="timed iterations (default %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first: compilation, caches (default %(default)s)")
    p.add_argument("--json", nargs="?", const=True, default=False, action=_JsonOrPath, metavar="",
                   help="print the profile as JSON on stdout instead of text")
    p.add_argument("--out", type=Path, help="write the profile as JSON to this file (default: not written)")
    p.add_argument("--plot", type=Path, help="write a PNG chart of the stage breakdown (default: none)")
    p.add_argument("--label", help="name for this profile (default: backend and settings)")
    p.add_argument("--fp-reference", action="store_true",
                   help="latency mode, compressed ONNX or checkpoint: also time the FP model the same way (same runtime, "
                        "tile, input and iterations) and say whether this one is slower (default: off)")
    p.add_argument("--compare", nargs=2, type=existing("profile"), metavar=("A.json", "B.json"),
                   help="print B/A ratios of two saved profiles and exit (default: profile)")
    p.add_argument("--mode", choices=("latency", "throughput"), default="latency",
                   help="latency: one image at a time, per stage; throughput: a folder of --iters images through the "
                        "pipelined path against compute-only and the sequential path (default %(default)s)")
    from ..encoding import add_encode_args

    add_encode_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("selftest", help="verify this machine: build a small engine, compare TensorRT with ONNX Runtime "
                                        "(exit 3: comparison skipped)")
    add_tile_arg(p, "square LR tile of the test model (default %(default)s)", default=32, square=True)
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=2, help="scale of the test model (default %(default)s)")
    add_plugins_arg(p, "python")
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep the ONNX model and engine in this folder (default: a temporary one)")
    p.set_defaults(func=cmd_selftest)

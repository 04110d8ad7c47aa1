"""Serving subcommands: ``triton-repo`` (write a model repository) and ``serve`` (run it)."""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

from ..errors import CompsrtError
from .args import add_plugins_arg, tile_type


def _repo_options(args):
    from ..runtime.serving.repo import RepoOptions

    return RepoOptions(tile=args.tile, max_batch=args.max_batch, tiles_per_request=args.tiles_per_request,
                       overlap=args.overlap, instances=args.instances, kind=args.kind, device=args.device,
                       dtype=args.dtype, max_pixels=args.max_pixels, runtime=args.runtime)


def cmd_triton_repo(args) -> int:
    from ..runtime.serving.repo import write_repository

    m = write_repository(args.out, engine=args.engine, onnx=args.onnx, checkpoint=args.checkpoint, scale=args.scale,
                         weights=args.weights, options=_repo_options(args))
    t = m["tile_model"]
    print(f"{args.out}: {t['name']} ({t['backend']}, tile {t['tile'][0]}x{t['tile'][1]}, x{t['scale']}, "
          + (f"fixed batch {t['fixed_batch']}" if t["fixed_batch"] else f"dynamic batch up to {t['max_batch']}")
          + f") and {m['image_model']['name']} (whole uint8 images, tiled server-side)")
    for n in m["notes"]:
        print(f"  note: {n}")
    print(f"  serve it: compsrt serve {args.out}   (or tritonserver --model-repository {args.out})")
    return 0


def cmd_serve(args) -> int:
    from ..runtime.serving import server

    repo = args.repo
    if repo is None:
        raise CompsrtError("pass the repository written by `compsrt triton-repo` (compsrt serve REPO)")
    if args.plugins == "python":
        raise CompsrtError("--plugins python cannot load in Triton's tensorrt backend; pass the C++ plugin library "
                           "(--plugins path/to/libcompsrt_plugins.so, built from compsrt/plugins/cpp) or none")
    # absolute: the server runs in a folder of its own
    extra = ([f"--backend-config=tensorrt,plugins={Path(args.plugins).resolve()}"]
             if args.plugins not in (None, "none") else [])
    s = server.start(repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                     metrics_port=args.metrics_port, timeout=args.timeout, log=args.log, extra_args=extra)
    info = {"http": s.http_url, "grpc": s.grpc_url, "metrics": s.metrics_url,
            "health": f"{s.http_url}/v2/health/ready", "log": str(s.log)}
    print(json.dumps(info) if args.json else
          f"tritonserver ready on {repo}\n  HTTP    {info['http']}\n  gRPC    {info['grpc']}\n"
          f"  health  {info['health']}\n  metrics {info['metrics']}\n  log     {info['log']}\n"
          f"  client: compsrt upscale IN OUT --server {info['http']}\n  Ctrl-C stops the server", flush=True)
    stop, started = [], time.time()
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while s.alive() and not stop and (args.duration is None or time.time() - started < args.duration):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        code = s.process.poll()
        s.stop()
    if code is not None:
        raise CompsrtError(f"tritonserver exited with status {code}; see {s.log}")
    return 0


def register(sub) -> None:
    from .runtime import add_backend_args

    p = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository (tile + whole-image models)")
    add_backend_args(p)
    tile = next(a for a in p._actions if a.dest == "tile")  # the tile model's fixed tile: no 0 (whole image) here
    tile.type, tile.default = tile_type(), 64
    tile.help = ("LR tile of the python tile model, N or WxH, multiples of 8 (default %(default)s; ONNX models and "
                 "engines keep their own); the old `--tile H W` still works for one release")
    device = next(a for a in p._actions if a.dest == "device")
    device.help = ("torch device of the python tile model: auto (resolved when the server loads the model: cuda when "
                   "the server host's torch sees a GPU, else cpu), cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="repository folder to write")
    p.add_argument("--runtime", choices=("auto", "onnxruntime", "python"), default="auto",
                   help="for --onnx: the stock onnxruntime backend (auto) or ONNX Runtime inside the python backend "
                        "(default %(default)s)")
    p.add_argument("--max-batch", type=int, default=8, help="tile model max_batch_size (dynamic batching; default 8)")
    p.add_argument("--tiles-per-request", type=int, default=4, help="tiles per call from the whole-image model (default 4)")
    p.add_argument("--instances", type=int, default=1, help="instance_group count of each model (default 1)")
    p.add_argument("--kind", choices=("auto", "cpu", "gpu"), default="auto", help="instance kind; auto = GPU for engines and --device cuda, else CPU (default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=4_000_000, help="largest whole-image request in input pixels (default %(default)s)")
    p.set_defaults(func=cmd_triton_repo)

    p = sub.add_parser("serve", help="start tritonserver on a repository from `compsrt triton-repo` (HTTP, gRPC, metrics)")
    p.add_argument("repo", type=Path, nargs="?", help="model repository")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (default %(default)s)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default %(default)s)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default %(default)s)")
    add_plugins_arg(p, None, "; for engine models only a library PATH loads in Triton's tensorrt backend")
    p.add_argument("--log", type=Path, help="server log file (default: a temporary file)")
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for readiness (default 180)")
    p.add_argument("--duration", type=float, help=argparse.SUPPRESS)  # tests: stop after this many seconds
    p.add_argument("--json", action="store_true", help="print the URLs as one JSON line")
    p.set_defaults(func=cmd_serve)

"""Bounded load test of `compsrt serve` on loopback: requests/s and latency at several concurrencies.

Writes a repository for the FP SwinIR-light model (``--scale``, weights from $COMPSRT_WEIGHTS_DIR),
starts tritonserver on 127.0.0.1 (the nvidia-pytriton wheel's, or one on PATH), sends ``--requests``
whole-image requests per concurrency level through tritonclient (one client per thread), checks
every response against the same model in-process (same tiling), and measures the in-process path
on the same images for comparison. Run (CPU; on a GPU add ``--device cuda --tolerance 1``: the
server's dynamic batches mix tiles of several requests, and cuDNN may pick another kernel for
another batch size, so single grey levels can differ; exact matches are counted too):

    python -m benchmarks.serving.load_test --out benchmarks/serving/results/<run>/load_test.json
"""

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


from compsrt.errors import CompsrtError
from compsrt.runtime.backends import torch_fp_backend
from compsrt.runtime.profile import machine_info
from compsrt.runtime.serving import repo as repo_mod
from compsrt.runtime.serving import server as server_mod
from compsrt.runtime.serving.client import RemoteUpscaler
from compsrt.runtime.upscaler import TiledUpscaler


def _pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--size", default="48x32", help="request image WxH")
    ap.add_argument("--tile", type=int, default=32)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=16, help="requests per concurrency level (bounded)")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    ap.add_argument("--device", default="cpu", help="torch device in-process and in the server's tile model")
    ap.add_argument("--tolerance", type=int, default=0,
                    help="grey levels a response may differ from the in-process result before it counts as corrupted")
    ap.add_argument("--time-limit", type=float, default=600, help="stop sending after this many seconds")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in-process and per server instance (default 1: oversubscribed threads "
                         "on a shared 2-core machine run many times slower)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    local = TiledUpscaler(torch_fp_backend(args.scale, device=args.device), tile=args.tile, overlap=16, batch=4)
    refs = [local.upscale(i).rgb for i in imgs]  # also the in-process warm-up
    lat = []
    t0 = time.perf_counter()
    for k in range(args.requests):
        t1 = time.perf_counter()
        local.upscale(imgs[k % 4])
        lat.append(time.perf_counter() - t1)
    inproc = {"requests": args.requests, "images_per_s": args.requests / (time.perf_counter() - t0),
              "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "torch_threads": torch.get_num_threads()}
    print(f"in-process: {inproc['images_per_s']:.2f} images/s, p50 {inproc['p50_ms']:.0f} ms, p99 {inproc['p99_ms']:.0f} ms",
          flush=True)
    results = {"command": "python -m benchmarks.serving.load_test " + " ".join(sys.argv[1:]), "size": [w, h],
               "scale": args.scale, "tile": args.tile, "instances": args.instances, "protocol": args.protocol,
               "device": args.device, "tolerance": args.tolerance,
               "in_process": inproc, "served": [], "machine": machine_info(),
               "load_average_before": os.getloadavg()}
    status = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "repo"
            repo_mod.write_repository(root, scale=args.scale, options=repo_mod.RepoOptions(
                tile=args.tile, overlap=16, instances=args.instances, max_batch=8, device=args.device))
            t_start = time.perf_counter()
            env = server_mod.python_env() | {"OMP_NUM_THREADS": str(args.threads)}
            with server_mod.running(root, timeout=180, env=env) as s:
                results["server_start_s"] = time.perf_counter() - t_start
                url = s.grpc_url if args.protocol == "grpc" else s.http_url
                RemoteUpscaler(url).upscale(imgs[0])  # warm-up
                deadline = time.time() + args.time_limit
                for conc in (int(c) for c in args.concurrency.split(",")):
                    n = max(args.requests, conc)
                    clients = [RemoteUpscaler(url) for _ in range(conc)]
                    bad, failed = 0, 0
                    lat = []

                    def one(k, clients=clients, conc=conc):
                        if time.time() > deadline:
                            return None
                        t1 = time.perf_counter()
                        try:
                            out = clients[k % conc].upscale(imgs[k % 4])
                        except Exception as exc:  # counted, never hidden
                            return ("failed", str(exc))
                        ref = refs[k % 4]
                        diff = int(np.abs(out.astype(np.int16) - ref).max()) if out.shape == ref.shape else 256
                        return (time.perf_counter() - t1, diff)

                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(conc) as pool:
                        rows = list(pool.map(one, range(n)))
                    secs = time.perf_counter() - t0
                    done = [r for r in rows if r is not None]
                    failed = sum(1 for r in done if r[0] == "failed")
                    ok = [r for r in done if r[0] != "failed"]
                    bad = sum(1 for r in ok if r[1] > args.tolerance)
                    lat = [r[0] for r in ok]
                    row = {"concurrency": conc, "requests": len(done), "failed": failed, "corrupted": bad,
                           "exact": sum(1 for r in ok if r[1] == 0), "max_diff": max((r[1] for r in ok), default=None),
                           "requests_per_s": len(done) / secs, "p50_ms": _pct(lat, 50) if lat else None,
                           "p99_ms": _pct(lat, 99) if lat else None, "server_alive": s.alive()}
                    results["served"].append(row)
                    print(f"concurrency {conc:>2}: {row['requests']} requests, {row['requests_per_s']:.2f} req/s, "
                          f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, failed {failed}, corrupted {bad}, "
                          f"exact {row['exact']}, max diff {row['max_diff']}",
                          flush=True)
                    for c in clients:
                        c.close()
    except CompsrtError as exc:  # the server did not start or a client could not connect: say why
        results["error"] = str(exc)
        print(f"error: {exc}", flush=True)
        status = 1
    results["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Tiled vs whole-image inference on a benchmark: PSNR of each and their difference.

    python -m benchmarks.runtime.tilecheck --dataset Set5 --scale 4 --tiles 64,96

Prints one JSON line per configuration; the docs record the run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> int:
    from compsrt.evaluation.benchmark import evaluate_dataset
    from compsrt.models.weights import load_swinir
    from compsrt.paths import benchmarks_dir
    from compsrt.runtime.backends import TorchBackend
    from compsrt.runtime.upscaler import TiledUpscaler

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="Set5")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tiles", default="64,96")
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    backend = TorchBackend(load_swinir(args.scale), args.device)
    root = benchmarks_dir()
    whole = evaluate_dataset(root, args.dataset, args.scale, TiledUpscaler(backend, tile=0).upscale_array, "whole", progress=False)
    print(json.dumps({"config": "whole", **whole.summary()}), flush=True)
    for t in [int(v) for v in args.tiles.split(",")]:
        start = time.perf_counter()
        up = TiledUpscaler(backend, tile=t, overlap=args.overlap)
        s = evaluate_dataset(root, args.dataset, args.scale, up.upscale_array, f"tile{t}", progress=False)
        per = {k: round(v[0] - whole.per_image[k][0], 5) for k, v in s.per_image.items()}
        print(json.dumps({"config": f"tile {t} overlap {args.overlap}", **s.summary(),
                          "delta_psnr_db": s.psnr - whole.psnr, "per_image_delta_db": per,
                          "max_abs_image_delta_db": float(np.max(np.abs(list(per.values())))),
                          "seconds": time.perf_counter() - start}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A batch of torch profiles in one process (the GPU figures in docs/runtime.md).

    python -m benchmarks.runtime.suite --device cuda --out DIR [--checkpoint q.pt] [--budget-s 230]

Profiles SwinIR-light FP32 / BF16 (autocast), eager / torch.compile, for 320x180 -> x4 and
640x360 -> x2, whole image in one piece (the figures quoted in the issue are whole-image), plus the
fake-quant model of ``--checkpoint`` when given, and the tiled path (tile 64, batch 8) once per
precision. Writes ``DIR/profiles.json`` (a list of profile dicts) and ``DIR/profiles.png``; stops
adding configurations when ``--budget-s`` is exceeded (what was skipped is recorded).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path


def main(argv=None) -> int:
    from compsrt.files import atomic_write_text
    from compsrt.runtime import profile as prof
    from compsrt.runtime.backends import torch_checkpoint_backend, torch_fp_backend
    from compsrt.runtime.upscaler import TiledUpscaler

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=230)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sizes = [((320, 180), 4), ((640, 360), 2)]
    configs = []  # (label, factory, size, tile, batch)
    for dtype in ("fp32", "bf16"):
        for size, scale in sizes:
            configs.append((f"torch-{dtype}-eager", ("fp", scale, dtype, False), size, 0, 1))
    if args.checkpoint:
        configs.append(("torch-fakequant-fp32-eager", ("ckpt", 4, "fp32", False), (320, 180), 0, 1))
    for dtype in ("fp32", "bf16"):
        configs.append((f"torch-{dtype}-eager-tiled64", ("fp", 4, dtype, False), (320, 180), 64, 8))
    if not args.no_compile:
        for dtype in ("bf16", "fp32"):
            for size, scale in sizes:
                configs.append((f"torch-{dtype}-compiled", ("fp", scale, dtype, True), size, 0, 1))
    results, skipped = [], []
    for label, (kind, scale, dtype, comp), size, tile, batch in configs:
        if time.perf_counter() - start > args.budget_s:
            skipped.append(f"{label} {size[0]}x{size[1]}")
            continue
        t0 = time.perf_counter()
        try:
            if kind == "fp":
                b = torch_fp_backend(scale, None, args.device, dtype, comp)
            else:
                b = torch_checkpoint_backend(args.checkpoint, args.device, dtype, comp)
            up = TiledUpscaler(b, tile=tile, batch=batch)
            p = prof.profile(up, size, args.iters, args.warmup, label=label, progress=False)
            p["setup_and_warmup_s"] = time.perf_counter() - t0 - p["end_to_end_ms"]["mean"] * args.iters / 1e3
            p["command"] = f"python -m benchmarks.runtime.suite --device {args.device} (config {label} {size[0]}x{size[1]})"
            results.append(p)
            c = p["stages"]["compute"]
            print(f"{label:<30} {size[0]}x{size[1]} x{p['output']['width'] // size[0]}: compute p50 {c['p50_ms']:.2f} ms, "
                  f"e2e p50 {p['end_to_end_ms']['p50']:.2f} ms, {p['throughput']['images_per_s']:.1f} img/s, "
                  f"peak dev {(p['memory']['device_peak_bytes'] or 0) / 2**20:.0f} MiB ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            del b, up
        except Exception as exc:  # record and carry on: one broken config must not lose the others
            skipped.append(f"{label} {size[0]}x{size[1]}: {exc.__class__.__name__}: {exc}")
            traceback.print_exc()
        atomic_write_text(args.out / "profiles.json", json.dumps({"profiles": results, "skipped": skipped}, indent=1))
    atomic_write_text(args.out / "profiles.json", json.dumps({"profiles": results, "skipped": skipped}, indent=1))
    if results:
        prof.plot(results, args.out / "profiles.png", title=results[0]["machine"].get("gpu") or results[0]["machine"].get("cpu"))
    print(f"skipped: {skipped}" if skipped else "all configurations ran", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

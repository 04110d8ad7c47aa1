"""Accuracy of each internal precision: PSNR/SSIM gap to the FP32-internal result of the same checkpoint.

For every scale, checkpoint (FP weights; W8A8 / W4A8 calibrated here when no checkpoint is given) and benchmark
set, each image is upscaled with the exported graph's operations in torch (compsrt.export.precision.
reference_forward: the same casts, whole images, reflect-padded to the window) for --internals, and scored as the
project's benchmarks are (Y channel, border = scale, uint8 outputs). The FP16 guard's verdict (activation ranges
on training patches) is recorded beside each fp16 row; fp16 is scored either way.

One GPU (about 8 minutes on an H100 with the defaults: 2 scales x 3 checkpoints x 3 sets x 3 internals,
W8A8 / W4A8 calibrated at 400 DQC iterations each):

    PYTHONPATH=. python benchmarks/export/precision_accuracy.py --out-dir /tmp/precision_accuracy

CPU subset (slow: reduced-precision kernels on an AVX2 CPU run ~5x slower than FP32):

    PYTHONPATH=. python benchmarks/export/precision_accuracy.py --scales 4 --models fp --datasets Set5 \\
        --device cpu --out-dir benchmarks/export/results/precision
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from compsrt.calibration.checkpoint import load_model
from compsrt.calibration.ranges import ranges_for_file
from compsrt.errors import CompsrtError
from compsrt.evaluation.benchmark import evaluate_dataset
from compsrt.evaluation.metrics import to_uint8
from compsrt.export.precision import check_fp16_guard, reference_forward
from compsrt.files import atomic_write_text
from compsrt.models.precision import InternalPrecision
from compsrt.models.weights import resolve_weights
from compsrt.paths import benchmarks_dir


def checkpoint_for(name: str, scale: int, args) -> Path:
    """The model file of ``name`` (fp, or a preset calibrated now unless --checkpoint-dir holds it)."""
    if name == "fp":
        return Path(resolve_weights(scale, args.weights_dir and str(Path(args.weights_dir) / f"swinir_light_x{scale}.pth")))
    given = Path(args.checkpoint_dir) / f"{name}_x{scale}.pt" if args.checkpoint_dir else None
    if given and given.is_file():
        return given
    from compsrt.calibration.config import QuantConfig
    from compsrt.calibration.distill import DistillSettings
    from compsrt.calibration.pipeline import compress

    path = Path(args.calibrate_into) / f"{name}_x{scale}.pt"
    if not path.is_file():
        t0 = time.perf_counter()
        compress(scale, QuantConfig.from_preset(name.upper(), "deploy"), path,
                 DistillSettings(iters=args.iters, seed=0), device=args.device, progress=False)
        print(f"calibrated {name} x{scale}: {args.iters} DQC iterations, {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def guard_verdict(model_file: Path, meta: dict, args) -> dict:
    ranges = meta.get("activation_ranges")
    if ranges is None:  # FP weights: record them (training patches)
        ranges = ranges_for_file(model_file, patches=args.range_patches, device=args.device)
    try:
        rec = check_fp16_guard(ranges, InternalPrecision.of("fp16"), str(model_file))
        return {"passes": True, **rec}
    except CompsrtError as exc:
        return {"passes": False, "message": str(exc)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 2])
    ap.add_argument("--models", nargs="+", default=["fp", "w8a8", "w4a8"], choices=("fp", "w8a8", "w4a8"))
    ap.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100"])
    ap.add_argument("--internals", nargs="+", default=["fp32", "bf16", "fp16"])
    ap.add_argument("--iters", type=int, default=400, help="DQC iterations when calibrating here (default 400)")
    ap.add_argument("--checkpoint-dir", default=None, help="folder with w8a8_x4.pt etc. (skips calibration)")
    ap.add_argument("--calibrate-into", default="/tmp/compsrt_precision", help="where calibrated checkpoints go")
    ap.add_argument("--weights-dir", default=None, help="folder with swinir_light_x{s}.pth (default: data folder)")
    ap.add_argument("--benchmarks", default=None, help="benchmark sets folder (default: the data folder's)")
    ap.add_argument("--range-patches", type=int, default=32, help="training patches for FP ranges (default 32)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out-dir", type=Path, required=True)
    a = ap.parse_args()
    if a.device.startswith("cuda"):  # FP32 accumulation in reduced-precision GEMMs (as TensorRT's), no TF32
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    a.out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(a.benchmarks) if a.benchmarks else benchmarks_dir()
    device = torch.device(a.device)
    for scale in a.scales:
        for name in a.models:
            model_file = checkpoint_for(name, scale, a)
            model, meta = load_model(model_file)
            model = model.eval().to(device)
            t0 = time.perf_counter()
            res = {"scale": scale, "model": name, "checkpoint": str(model_file), "device": str(device),
                   "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                   "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                   "dqc_iters": None if name == "fp" else meta.get("settings", {}).get("iters"),
                   "scored_in": "torch (compsrt.export.precision.reference_forward, the graph's casts)",
                   "fp16_guard": guard_verdict(model_file, meta, a), "rows": []}
            for ds in a.datasets:
                base = None
                for internal in a.internals:
                    policy, cache = InternalPrecision.of(internal), {}
                    finite = [True]

                    def upscale(lr: np.ndarray, model=model, policy=policy, cache=cache, finite=finite) -> np.ndarray:
                        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255).to(device)
                        with torch.no_grad():
                            y = reference_forward(model, x, policy, cache)[0].float()
                        finite[0] &= bool(torch.isfinite(y).all())
                        return to_uint8(y.nan_to_num(0.0).permute(1, 2, 0).cpu().numpy())

                    s = evaluate_dataset(root, ds, scale, upscale, f"{name}-{internal}", progress=False)
                    row = {"dataset": ds, "internal": internal, "kept_fp32": policy.kept_fp32(), "psnr": s.psnr,
                           "ssim": s.ssim, "n": s.n, "seconds": s.seconds, "finite": finite[0],
                           "per_image": {k: list(v) for k, v in s.per_image.items()}}
                    if internal == "fp32":
                        base = row
                    if base is not None:
                        row["psnr_gap_db"] = s.psnr - base["psnr"]
                        row["ssim_gap"] = s.ssim - base["ssim"]
                    res["rows"].append(row)
                    print(f"x{scale} {name:5s} {ds:6s} {internal}: PSNR {s.psnr:.4f} SSIM {s.ssim:.5f}"
                          + (f"  gap {row['psnr_gap_db']:+.4f} dB" if "psnr_gap_db" in row else "")
                          + ("" if finite[0] else "  NON-FINITE") + f"  ({s.seconds:.0f} s)", flush=True)
            res["seconds"] = time.perf_counter() - t0
            out = a.out_dir / f"accuracy_{name}_x{scale}.json"
            atomic_write_text(out, json.dumps(res, indent=1) + "\n")
            print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()

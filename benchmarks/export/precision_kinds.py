"""Which operation kinds may run in BF16 / FP16: each kind alone in reduced precision, on training patches.

For every reduced dtype and every operation kind (compsrt.models.precision.OP_KINDS) the FP model runs with that
kind alone in the dtype (the graph's casts, compsrt.export.precision.reference_forward), then with all kinds,
then with the exported default (KEEP_FP32 kinds in FP32). Scored against the FP32 run of the same patches: the
Y-PSNR gap (uint8 outputs vs the HR patch, border = scale, as the benchmarks score), the output's max |error|
in 8-bit levels, and the fidelity PSNR of the reduced output against the FP32 output.

Inputs are training images only (train/ and calib/ HR, cropped, MATLAB-bicubic degraded), never benchmarks.

    PYTHONPATH=. python benchmarks/export/precision_kinds.py --scale 4 --patches 4 --patch 48 \
        --out benchmarks/export/results/precision/kinds_x4.json
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
from compsrt.calibration.data import training_sources
from compsrt.evaluation.bicubic import bicubic_degrade
from compsrt.evaluation.metrics import score_y
from compsrt.export.precision import reference_forward
from compsrt.files import atomic_write_text
from compsrt.images import load_image
from compsrt.models.precision import KEEP_FP32, OP_KINDS, InternalPrecision
from compsrt.models.weights import resolve_weights
from compsrt.paths import data_root

# A kind stays FP32 when, alone in the reduced dtype, the output's fidelity to the FP32 output falls below this
# (65 dB: RMS error 0.14 of an 8-bit level; the kinds' errors add up, and at a model PSNR of 36 dB the whole
# graph must stay above ~62 dB for a gap under 0.01 dB).
FIDELITY_FLOOR_DB = 65.0


def training_pairs(scale: int, n: int, patch: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (LR, HR) uint8 patch pairs: HR crops of training images, degraded by MATLAB bicubic."""
    rng = np.random.default_rng(seed)
    srcs = training_sources(data_root())
    hp = patch * scale
    out = []
    while len(out) < n:
        _, path = srcs[rng.integers(len(srcs))]
        hr = load_image(path).rgb
        h, w = hr.shape[:2]
        if min(h, w) < hp:
            continue
        y, x = rng.integers(h - hp + 1), rng.integers(w - hp + 1)
        crop = np.ascontiguousarray(hr[y: y + hp, x: x + hp])
        out.append((bicubic_degrade(crop, scale), crop))
    return out


def run(model, pairs, internal: InternalPrecision, device: str) -> list[np.ndarray]:
    outs = []
    with torch.no_grad():
        for lr, _ in pairs:
            x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255).to(device)
            outs.append(reference_forward(model, x, internal)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
    return outs


def score(outs, ref, pairs, scale: int) -> dict:
    psnr = [score_y(np.round(o * 255).astype(np.uint8), hr, scale)[0] for o, (_, hr) in zip(outs, pairs)]
    err = max(float(np.abs(o - r).max()) for o, r in zip(outs, ref)) * 255
    mse = float(np.mean([np.mean((o - r) ** 2) for o, r in zip(outs, ref)]))
    finite = all(bool(np.isfinite(o).all()) for o in outs)
    return {"psnr_y": float(np.mean(psnr)), "max_abs_err_levels": err,
            "fidelity_psnr": float(10 * np.log10(1.0 / mse)) if mse > 0 else None, "finite": finite}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--weights", default=None, help="FP weights (default: the data folder's stand-in)")
    ap.add_argument("--patches", type=int, default=4)
    ap.add_argument("--patch", type=int, default=48, help="LR patch side (multiple of 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.device.startswith("cuda"):  # FP32 accumulation in reduced-precision GEMMs, as TensorRT's kernels
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model, _ = load_model(resolve_weights(a.scale, a.weights))
    model = model.to(a.device)
    pairs = training_pairs(a.scale, a.patches, a.patch, a.seed)
    t0 = time.perf_counter()
    ref = run(model, pairs, InternalPrecision.of("fp32"), a.device)
    base = score(ref, ref, pairs, a.scale)
    rows = []
    for dt in a.dtypes:
        configs = [(f"{k} only", {k}) for k in OP_KINDS] + [("all kinds", set(OP_KINDS)),
                                                             ("default", set(OP_KINDS) - KEEP_FP32[dt])]
        for label, low in configs:
            s = score(run(model, pairs, InternalPrecision.of(dt, low), a.device), ref, pairs, a.scale)
            s.update(dtype=dt, config=label, low=sorted(low), psnr_gap_db=s["psnr_y"] - base["psnr_y"])
            rows.append(s)
            print(f"{dt:5s} {label:16s} gap {s['psnr_gap_db']:+.4f} dB  max|err| {s['max_abs_err_levels']:.3f} levels"
                  f"  fidelity {s['fidelity_psnr'] or float('inf'):.1f} dB", flush=True)
    keep = {dt: sorted(r["low"][0] for r in rows if r["dtype"] == dt and r["config"].endswith(" only")
                       and (not r["finite"] or (r["fidelity_psnr"] or 1e9) < FIDELITY_FLOOR_DB)) for dt in a.dtypes}
    print(f"kinds to keep in FP32 (solo fidelity < {FIDELITY_FLOOR_DB} dB): {keep}")
    res = {"scale": a.scale, "fidelity_floor_db": FIDELITY_FLOOR_DB, "keep_fp32_by_rule": keep, "patches": a.patches, "patch": a.patch, "seed": a.seed, "device": a.device,
           "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
           "fp32_psnr_y": base["psnr_y"], "keep_fp32_exported": {k: sorted(v) for k, v in KEEP_FP32.items()},
           "seconds": time.perf_counter() - t0, "rows": rows}
    atomic_write_text(a.out, json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

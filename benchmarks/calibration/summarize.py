"""Markdown table of a run_device.py result folder: one row per configuration, gaps to the FP JSON beside it
(and, for runs with ``--onnx``, a second table: ONNX size, weight bytes by dtype, per-site bits, ORT parity).

usage: python -m benchmarks.calibration.summarize benchmarks/calibration/results/run5_x4_table
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DATASETS = ("Set5", "Set14", "B100")


def row(r: dict, fp: dict, digits: int = 2) -> str:
    c, p = r["calibration"], r["pack"]
    cells = [r["tag"].split("_", 1)[1], c["lr_mode"], f"{c['iters_done']:,}"]
    for ds in DATASETS:
        e = r["eval"][ds]
        cells.append(f"{e['psnr']:.{digits}f} / {e['ssim']:.4f} ({e['psnr'] - fp['eval'][ds]['psnr']:+.{digits}f})")
    cells += [f"{c['seconds_dobi']:.0f} + {c['seconds_train']:.0f}", f"{c['seconds_per_iter_steady']:.3f}",
              f"{p['code_and_mask_bits_per_quantized_weight']:.2f}", f"{p['bits_per_param']:.2f}",
              f"{c['collapsed_steps']:,}"]
    return "| " + " | ".join(cells) + " |"


def onnx_row(r: dict) -> str | None:
    """Sizes, per-site bits and the ONNX Runtime parity of a run with ``--onnx`` (None without)."""
    o = r.get("onnx")
    if o is None:
        return None
    p, w = o["parity"], o["weight_bytes_by_dtype"]
    fo = (p.get("site_check") or {}).get("forced", {})
    q = o["quant_bits"]
    cells = [r["tag"].split("_", 1)[1], f"{o['file_bytes'] / 1e6:.2f}",
             " + ".join(f"{k} {w[k] / 1e3:.0f}" for k in ("int4", "int8", "float") if w.get(k, 0) > 1),
             ", ".join(f"{k}:{v}" for k, v in o["weight_storage"].items() if v),
             ", ".join(f"W{k}x{v}" for k, v in q.get("weight_bits", {}).items()) + " / "
             + ", ".join(f"A{k}x{v}" for k, v in q["activation_bits"].items()),
             str(q.get("matches")), f"{p['psnr_torch']:.4f} / {p['psnr_onnx']:.4f} ({p['psnr_diff']:+.4f})",
             f"{fo.get('off_boundary')} / {fo.get('out_max_abs', float('nan')):.1e}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--digits", type=int, default=2, help="decimals of PSNR and its gap (default %(default)s)")
    args = ap.parse_args()
    files = sorted(Path(args.folder).glob("x*.json"))
    fp = next((json.loads(f.read_text()) for f in files if f.stem.endswith("_fp32")), None)
    if fp is None:
        raise SystemExit(f"{args.folder}: no x*_fp32.json (the FP scores the gaps are taken against)")
    print("FP32: " + ", ".join(f"{ds} {fp['eval'][ds]['psnr']:.4f} / {fp['eval'][ds]['ssim']:.4f}" for ds in DATASETS))
    print()
    print("| config | DQC rule | iters | " + " | ".join(DATASETS) + " | DOBI + DQC s | s / iter | "
          "weight code+mask bits | bits/param (file) | collapsed steps |")
    print("|" + "---|" * 11)
    for f in files:
        r = json.loads(f.read_text())
        if "calibration" in r:
            print(row(r, fp, args.digits))
    onnx_rows = [x for x in (onnx_row(json.loads(f.read_text())) for f in files) if x]
    if onnx_rows:
        print()
        print("| config | ONNX MB (plugin, tile 64) | weight bytes by dtype, kB | weight storage (Linears) | "
              "bits (sites) | graph = sidecar bits | Set5 PSNR torch / ORT (diff) | forced site check: off-boundary / out max abs |")
        print("|" + "---|" * 8)
        print("\n".join(onnx_rows))


if __name__ == "__main__":
    main()

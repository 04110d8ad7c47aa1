"""Markdown table of a run_device.py result folder: one row per configuration, gaps to the FP JSON beside it.

usage: python -m benchmarks.calibration.summarize benchmarks/calibration/results/run5_x4_table
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DATASETS = ("Set5", "Set14", "B100")


def row(r: dict, fp: dict) -> str:
    c, p = r["calibration"], r["pack"]
    cells = [r["tag"].split("_", 1)[1], c["lr_mode"], f"{c['iters_done']:,}"]
    for ds in DATASETS:
        e = r["eval"][ds]
        cells.append(f"{e['psnr']:.2f} / {e['ssim']:.4f} ({e['psnr'] - fp['eval'][ds]['psnr']:+.2f})")
    cells += [f"{c['seconds_dobi']:.0f} + {c['seconds_train']:.0f}", f"{c['seconds_per_iter_steady']:.3f}",
              f"{p['code_and_mask_bits_per_quantized_weight']:.2f}", f"{p['bits_per_param']:.2f}",
              f"{c['collapsed_steps']:,}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
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
            print(row(r, fp))


if __name__ == "__main__":
    main()

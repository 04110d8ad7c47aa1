"""Fill .carry/ (git-ignored) with what a GPU run needs: FP weights, benchmark sets for evaluation and the
bicubic LR training cache. Training HR never travels (only its LR), benchmarks are only evaluated on.

usage: python -m benchmarks.calibration.prepare_carry --scale 4 [--bsd-max N] [--webp]
(--webp: the benchmark images as lossless WebP, the same pixels in about 0.7 of the bytes, for the x2 carry to
fit the device tool's 64 MiB with the tree)
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def copy_images(src: Path, dst: Path, webp: bool) -> None:
    """The PNGs of ``src`` into ``dst``, as they are or re-encoded as lossless WebP (pixels checked equal)."""
    import numpy as np
    from PIL import Image

    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.png")):
        if not webp:
            shutil.copy2(f, dst / f.name)
            continue
        out = dst / f"{f.stem}.webp"
        with Image.open(f) as img:
            rgb = img.convert("RGB")
        rgb.save(out, "WEBP", lossless=True, quality=80, method=4)  # method 6: 50x slower, 0.2 % smaller
        with Image.open(out) as back:
            if not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(rgb)):
                raise SystemExit(f"{out}: lossless WebP did not keep the pixels of {f}; run without --webp")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--carry", default=str(REPO / ".carry"))
    ap.add_argument("--bsd-max", type=int, default=None, help="keep only the first N BSD200 LR images")
    ap.add_argument("--no-benchmarks", action="store_true")
    ap.add_argument("--webp", action="store_true", help="benchmark images as lossless WebP (read as PNG would be)")
    args = ap.parse_args()
    shared, carry = Path(args.shared), Path(args.carry)
    os.environ["COMPSRT_CACHE"] = os.environ.get("PREP_CACHE", "/tmp/compsrt_lr_cache")  # full LR cache, outside the repo
    from compsrt.calibration.data import load_training_lr, lr_cache

    load_training_lr(args.scale, shared)
    src = lr_cache(args.scale)
    for mine in (carry / "cache" / "train_lr", carry / "data"):  # only this script's folders
        if mine.exists():
            shutil.rmtree(mine)
    dst = carry / "cache" / "train_lr" / f"x{args.scale}"
    for sub in sorted(src.iterdir()):
        files = sorted(sub.glob("*.png"))
        if sub.name == "BSD200" and args.bsd_max is not None:
            files = files[: args.bsd_max]
        (dst / sub.name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, dst / sub.name / f.name)
    if args.scale == 4:
        shutil.copytree(shared / "calib" / "lr_x4", dst / "calib_lr_x4")
    (carry / "data" / "weights").mkdir(parents=True)
    shutil.copy2(shared / "weights" / f"swinir_light_x{args.scale}.pth", carry / "data" / "weights")
    if not args.no_benchmarks:
        for s in ("Set5", "Set14", "B100"):
            for sub in ("HR", f"LR_bicubic/X{args.scale}"):
                copy_images(shared / "benchmarks" / s / sub, carry / "data" / "benchmarks" / s / sub, args.webp)
    total = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    print(f"{carry}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

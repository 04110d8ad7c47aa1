"""Scoring an upscaler on the standard benchmarks (EDSR layout) the way published tables are made.

Layout: ``<root>/<Set>/HR/<name>.png`` and ``<root>/<Set>/LR_bicubic/X<s>/<name>x<s>.png``. Lossless WebP
copies (``.webp``, the same pixels in about 0.7 of the bytes) are read as well: they let a copy of the sets travel
to a GPU machine within a transfer limit (``benchmarks/calibration/prepare_carry.py --webp``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import CompsrtError
from ..images import load_image
from .bicubic import imresize
from .metrics import score_y

Upscaler = Callable[[np.ndarray], np.ndarray]
SUFFIXES = (".png", ".webp")


@dataclass
class DatasetScore:
    dataset: str
    scale: int
    model: str
    psnr: float
    ssim: float
    n: int
    seconds: float
    per_image: dict[str, tuple[float, float]]

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("per_image")
        return d


def benchmark_pairs(root: Path, dataset: str, scale: int) -> list[tuple[str, Path, Path]]:
    """(name, LR path, HR path) for every HR image of ``dataset``, with a clear error when missing."""
    hr_dir = root / dataset / "HR"
    lr_dir = root / dataset / "LR_bicubic" / f"X{scale}"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise CompsrtError(
            f"benchmark {dataset} x{scale} not found: expected {hr_dir} and {lr_dir}; "
            "set --data-root or $COMPSRT_BENCHMARKS to the folder holding Set5/, Set14/, B100/"
        )
    pairs = []
    for hr in sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in SUFFIXES):
        lrs = [lr_dir / f"{hr.stem}x{scale}{suffix}" for suffix in SUFFIXES]
        lr = next((p for p in lrs if p.is_file()), None)
        if lr is None:
            raise CompsrtError(f"benchmark {dataset}: {lrs[0]} (or .webp) is missing for {hr}")
        pairs.append((hr.stem, lr, hr))
    if not pairs:
        raise CompsrtError(f"benchmark {dataset}: no PNG or WebP images in {hr_dir}")
    return pairs


def bicubic_upscaler(scale: int) -> Upscaler:
    return lambda lr: imresize(lr, scale)


def evaluate_dataset(root: Path, dataset: str, scale: int, upscale: Upscaler, model: str, progress: bool = True) -> DatasetScore:
    """Mean Y-channel PSNR/SSIM over a benchmark, with ``scale`` border pixels cropped."""
    start = time.perf_counter()
    per_image = {}
    pairs = benchmark_pairs(root, dataset, scale)
    for name, lr_path, hr_path in tqdm(pairs, desc=f"{dataset} x{scale}", disable=not progress, leave=False):
        sr = upscale(load_image(lr_path).rgb)
        per_image[name] = score_y(sr, load_image(hr_path).rgb, border=scale)
    psnrs, ssims = zip(*per_image.values())
    return DatasetScore(dataset, scale, model, float(np.mean(psnrs)), float(np.mean(ssims)), len(pairs), time.perf_counter() - start, per_image)

"""Calibration / distillation inputs: LR patches from training images only.

Sources: ``<data>/train/{T91,BSD200,Kodak}`` and ``<data>/calib/*.png`` (DIV2K HR), degraded with the
foundation's MATLAB-style ``bicubic_degrade``; for x4 also the official DIV2K LR ``<data>/calib/lr_x4``.
The benchmark sets (Set5, Set14, B100) are never read here. LR images are cached as PNG under
``<cache>/train_lr/x<s>/`` so the bicubic runs once; when the HR folders are absent (e.g. on the GPU
machine, which gets only the cache), the cache alone is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..errors import CompsrtError
from ..evaluation.bicubic import bicubic_degrade
from ..files import atomic_path
from ..images import load_image
from ..paths import cache_dir, data_root

TRAIN_SETS = ("T91", "BSD200", "Kodak")
FORBIDDEN = ("Set5", "Set14", "B100", "benchmarks")
EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def _images(folder: Path) -> list[Path]:
    """Image files of ``folder``, without hidden files (a cache file still being written is one)."""
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in EXTS and not p.name.startswith(".")) \
        if folder.is_dir() else []


def training_sources(root: Path) -> list[tuple[str, Path]]:
    """(set name, HR path) for every training image under ``root`` (train sets and calib HR)."""
    out = [(s, p) for s in TRAIN_SETS for p in _images(root / "train" / s)]
    out += [("calib", p) for p in _images(root / "calib")]
    return out


def lr_cache(scale: int) -> Path:
    return cache_dir() / "train_lr" / f"x{scale}"


def load_training_lr(scale: int, root: Path | None = None, sets: tuple[str, ...] | None = None,
                     progress: bool = True) -> list[tuple[str, np.ndarray]]:
    """[(name, uint8 LR (h, w, 3))] for all training images, degraded by MATLAB bicubic (cached)."""
    root = Path(root) if root is not None else data_root()
    if any(part in FORBIDDEN for part in root.parts):
        raise CompsrtError(f"refusing to calibrate on {root}: benchmark sets are for evaluation only")
    cache = lr_cache(scale)
    want = set(sets) if sets else None
    out = []
    srcs = [(s, p) for s, p in training_sources(root) if want is None or s in want]
    for s, p in tqdm(srcs, desc=f"training LR x{scale}", disable=not progress or not srcs, leave=False):
        dest = cache / s / f"{p.stem}.png"
        if dest.is_file():
            lr = np.asarray(Image.open(dest).convert("RGB"))
        else:
            lr = bicubic_degrade(load_image(p).rgb, scale)
            with atomic_path(dest) as tmp:  # a unique name: processes filling one cache at once do not collide
                Image.fromarray(lr).save(tmp, format="PNG")
        out.append((f"{s}/{p.stem}", lr))
    if not srcs:  # no HR here: use whatever the cache holds
        for s in (*TRAIN_SETS, "calib"):
            if want is None or s in want:
                out += [(f"{s}/{p.stem}", np.asarray(Image.open(p).convert("RGB"))) for p in _images(cache / s)]
    if scale == 4 and (want is None or "calib_lr_x4" in want):
        for folder in (root / "calib" / "lr_x4", cache / "calib_lr_x4"):
            imgs = _images(folder)
            if imgs:
                out += [(f"calib_lr_x4/{p.stem}", np.asarray(Image.open(p).convert("RGB"))) for p in imgs]
                break
    if not out:
        raise CompsrtError(
            f"no training images for x{scale}: expected {root}/train/{{T91,BSD200,Kodak}} or {root}/calib "
            f"(or a filled cache {cache}); set $COMPSRT_DATA to the shared data folder"
        )
    return out


class PatchSampler:
    """Random LR patches with random flips / 90-degree rotations, as float (B, 3, p, p) in [0, 1]."""

    def __init__(self, images: list[np.ndarray], patch: int = 64, device: str | torch.device = "cpu", seed: int = 0):
        self.patch = patch
        self.device = torch.device(device)
        self.images = [torch.from_numpy(np.array(im)).permute(2, 0, 1).to(self.device)  # a writable copy
                       for im in images if min(im.shape[:2]) >= patch]
        if not self.images:
            raise CompsrtError(f"no training image is at least {patch}x{patch} LR pixels")
        self.gen = np.random.default_rng(seed)

    def sample(self, batch: int) -> torch.Tensor:
        p = self.patch
        out = []
        for _ in range(batch):
            im = self.images[self.gen.integers(len(self.images))]
            _, h, w = im.shape
            y, x = self.gen.integers(h - p + 1), self.gen.integers(w - p + 1)
            t = im[:, y : y + p, x : x + p]
            k = int(self.gen.integers(8))
            if k & 4:
                t = t.flip(-1)
            if k & 3:
                t = torch.rot90(t, k & 3, dims=(-2, -1))
            out.append(t)
        return torch.stack(out).float().div_(255.0)

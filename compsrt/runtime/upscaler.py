"""Any image size through a backend's tile: pad, cut into tiles, batch, run, blend, write."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import CompsrtError
from ..images import SAVE_FORMATS
from .backends import Backend
from .tiling import Stitcher, extract_tiles, pad_image, plan
from .timing import StageTimer

DEFAULT_TILE = 256  # LR pixels, for backends that accept any size
DEFAULT_OVERLAP = 16
DEFAULT_BATCH = 4
IMAGE_EXTS = tuple(SAVE_FORMATS)


@dataclass
class UpscaleResult:
    rgb: np.ndarray  # uint8 (sH, sW, 3); uint16 for a uint16 input
    rgb_float: np.ndarray | None  # float32 before clamping/rounding, when asked for
    tiles: int


class TiledUpscaler:
    """Upscales uint8 RGB arrays of any size with ``backend`` through fixed tiles.

    ``tile``: LR tile size; defaults to the backend's fixed tile, else :data:`DEFAULT_TILE`
    (``0`` = the whole image in one piece, for backends that accept any size). For such backends a
    tile larger than the (window-padded) image shrinks to it, so small images run whole.
    """

    def __init__(self, backend: Backend, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 margin: int | None = None, batch: int | None = None, window: int = 8, progress: bool = False):
        self.backend = backend
        if isinstance(tile, int) and tile:
            tile = (tile, tile)
        if backend.tile is not None:
            if tile and tuple(tile) != tuple(backend.tile):
                raise CompsrtError(f"{backend.name} has a fixed tile {backend.tile[1]}x{backend.tile[0]}; "
                                   f"--tile {tile[1]}x{tile[0]} cannot be used (omit --tile)")
            self.tile = tuple(backend.tile)
        else:
            self.tile = None if tile == 0 else tuple(tile or (DEFAULT_TILE, DEFAULT_TILE))
        self.overlap = overlap
        self.margin = margin
        self.batch = backend.batch or batch or DEFAULT_BATCH
        self.window = int(getattr(backend, "window", None) or window)
        self.progress = progress

    def _grid(self, h: int, w: int):
        tile = self.tile
        if tile is not None and self.backend.tile is None:
            ph, pw = h + (-h) % self.window, w + (-w) % self.window
            th, tw = (tile, tile) if isinstance(tile, int) else tile
            tile = (min(th, ph), min(tw, pw))
            ov = min(self.overlap, min(tile) // 2)
            ov -= ov % 2
        else:
            ov = self.overlap if tile is not None else 0  # one whole-image tile: nothing overlaps
        margin = self.margin if self.margin is not None else ov // 4
        return plan(h, w, tile, ov, min(margin, ov // 2), self.window)

    def upscale(self, rgb: np.ndarray, timer: StageTimer | None = None, keep_float: bool = False) -> UpscaleResult:
        timer = timer or StageTimer()
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16):
            raise CompsrtError(f"expected uint8 or uint16 RGB (H, W, 3), got {rgb.dtype} {rgb.shape}")
        sixteen = rgb.dtype == np.uint16
        keep_float = keep_float or sixteen
        h, w = rgb.shape[:2]
        s = self.backend.scale
        with timer.stage("tiling"):
            grid = self._grid(h, w)
            padded = pad_image(rgb, grid.padded_h, grid.padded_w)
        with timer.stage("stitching"):
            stitch = Stitcher(grid, s, keep_float)
        origins = grid.origins()
        bar = tqdm(total=len(origins), desc="tiles", unit="tile", disable=not self.progress or len(origins) < 8, leave=False)
        for i in range(0, len(origins), self.batch):
            chunk = origins[i : i + self.batch]
            with timer.stage("tiling"):
                x = extract_tiles(padded, grid, chunk)
            y = self.backend.run(x, timer)
            with timer.stage("stitching"):
                for o, t in zip(chunk, y):
                    stitch.add(o, t)
            bar.update(len(chunk))
        bar.close()
        assert stitch.done
        out = stitch.result_u8
        if sixteen:  # from the float result: no 8-bit round trip
            with timer.stage("stitching"):
                out = np.round(np.clip(stitch.result_f32, 0.0, 1.0) * 65535.0).astype(np.uint16)
        return UpscaleResult(out, stitch.result_f32, grid.count)

    def upscale_array(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB -> uint8 RGB; the ``upscale_fn`` of :func:`compsrt.evaluation.benchmark.evaluate_dataset`."""
        return self.upscale(rgb).rgb

    def upscale_file(self, src: str | os.PathLike, dst: str | os.PathLike, timer: StageTimer | None = None,
                     max_pixels: int | None = None, encode=None) -> tuple[tuple[int, int], tuple[int, int], str]:
        """Decode, upscale, encode (``encode``: :class:`compsrt.encoding.EncodeOptions`); 16-bit stays 16-bit."""
        from ..encoding import load_image_any, save_image_any

        timer = timer or StageTimer()
        dst = Path(dst)
        if dst.suffix.lower() not in SAVE_FORMATS:  # fail before spending compute
            raise CompsrtError(f"cannot write {dst}: use one of the extensions {', '.join(SAVE_FORMATS)}")
        with timer.stage("decode"):
            image = load_image_any(src, limit=max_pixels)
        result = self.upscale(image.rgb, timer)
        with timer.stage("stitching"):
            alpha = upscale_alpha(image.alpha, self.backend.scale)
        with timer.stage("encode"):
            save_image_any(dst, result.rgb, alpha, encode)
        h, w = image.rgb.shape[:2]
        return (w, h), (result.rgb.shape[1], result.rgb.shape[0]), image.mode


def upscale_alpha(alpha: np.ndarray | None, scale: int) -> np.ndarray | None:
    """Bicubic (MATLAB imresize) upscaling of an alpha channel, keeping its dtype."""
    if alpha is None:
        return None
    from ..evaluation.bicubic import imresize

    if alpha.dtype == np.uint8:
        return imresize(alpha, scale)
    top = float(np.iinfo(alpha.dtype).max)
    return np.round(np.clip(imresize(alpha.astype(np.float64) / top, scale), 0, 1) * top).astype(alpha.dtype)


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
    if not files:
        raise CompsrtError(f"{folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return files

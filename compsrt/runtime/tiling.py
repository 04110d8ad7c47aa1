"""Fixed-size tiling of an image with overlap and blending, so a fixed-shape engine upscales any size.

Layout (all in low-resolution pixels):

* The image is first reflect-padded at the bottom/right to a multiple of the window, exactly as
  :meth:`SwinIR.pad_to_window` pads it, and further (reflect, then edge) up to one tile if smaller.
* Tile origins are multiples of the window, so every tile sees the same window partition as
  whole-image inference; origins are spread evenly so neighbours overlap by at least ``overlap``.
* Each tile's output is weighted by a separable weight that is 0 within ``margin`` pixels of an
  *internal* tile edge (image borders are not internal), rises with a raised-cosine ramp across the
  rest of the overlap (complementary to the neighbour's), and is 1 elsewhere; the stitched image is the weighted sum divided by the
  weight sum. Outputs are therefore exact copies of one tile away from the overlaps and a smooth,
  seam-free mix inside them; pixels near tile edges (least context) never contribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CompsrtError


def tile_starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Origins of tiles of size ``tile`` covering ``length`` (>= tile), multiples of ``align``."""
    if length <= tile:
        return [0]
    stride = (tile - overlap) - (tile - overlap) % align  # keeps at least ``overlap`` between neighbours
    if stride <= 0:
        raise CompsrtError(f"overlap {overlap} leaves no stride for tile {tile}")
    n = math.ceil((length - tile) / stride) + 1
    last = length - tile
    starts = []
    for i in range(n):
        s = (i * last) // (n - 1)
        s -= s % align
        starts.append(s)
    starts[-1] = last  # length and tile are multiples of align, so last is too
    out = sorted(set(starts))
    return out


def _ramp(n: int, margin: int, ramp: int, scale: int) -> np.ndarray:
    """Weights of ``n * scale`` output pixels from an internal edge: 0 for ``margin`` LR pixels, a
    raised-cosine ramp over ``ramp`` LR pixels, then 1 (evaluated at output-pixel centres)."""
    d = (np.arange(n * scale, dtype=np.float64) + 0.5) / scale - margin
    if ramp <= 0:
        return (d > 0).astype(np.float64)
    u = np.clip(d / ramp, 0.0, 1.0)
    return np.sin(0.5 * np.pi * u) ** 2


def axis_weights(starts: list[int], tile: int, margin: int, scale: int = 1) -> list[np.ndarray]:
    """Per-tile 1-D weights (``tile * scale`` output pixels) for one axis.

    Across the overlap of two neighbours the two ramps are complementary (they sum to 1); edges
    on the image border keep weight 1.
    """
    weights = []
    for i, s in enumerate(starts):
        w = np.ones(tile * scale, dtype=np.float64)
        if i > 0:  # internal edge on the low side
            ov = starts[i - 1] + tile - s
            w *= _ramp(tile, margin, ov - 2 * margin, scale)
        if i < len(starts) - 1:  # internal edge on the high side
            ov = s + tile - starts[i + 1]
            w *= _ramp(tile, margin, ov - 2 * margin, scale)[::-1]
        weights.append(w)
    return weights


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image lie and how their outputs are blended."""

    height: int  # input image size
    width: int
    padded_h: int  # after padding to the window and to at least one tile
    padded_w: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    overlap: int
    margin: int

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    def origins(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]


def plan(height: int, width: int, tile: int | tuple[int, int] | None, overlap: int = 16, margin: int | None = None,
         window: int = 8) -> TileGrid:
    """A tile grid for an ``height`` x ``width`` image; ``tile=None`` means one tile = the whole image."""
    if height <= 0 or width <= 0:
        raise CompsrtError(f"cannot tile an empty image ({width}x{height})")
    ph = height + (-height) % window
    pw = width + (-width) % window
    if tile is None:
        th, tw = ph, pw
    else:
        th, tw = (tile, tile) if isinstance(tile, int) else tile
        if th % window or tw % window or th <= 0 or tw <= 0:
            raise CompsrtError(f"tile {tw}x{th} must be a positive multiple of the window ({window}); pass --tile "
                               f"{max(window, tw - tw % window)}x{max(window, th - th % window)}")
    margin = overlap // 4 if margin is None else margin
    if overlap < 0 or 2 * margin > overlap:
        raise CompsrtError(f"overlap {overlap} must be >= 0 and >= 2 * margin ({margin})")
    if overlap * 2 > min(th, tw):
        raise CompsrtError(f"overlap {overlap} is more than half the tile {tw}x{th}; use a smaller --overlap")
    ph, pw = max(ph, th), max(pw, tw)
    ys = tile_starts(ph, th, overlap, window)
    xs = tile_starts(pw, tw, overlap, window)
    return TileGrid(height, width, ph, pw, th, tw, tuple(ys), tuple(xs), overlap, margin)


def pad_image(img: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Pad (H, W, C) at the bottom/right to (ph, pw): reflect as the model does, edge beyond that."""
    h, w = img.shape[:2]
    out = img
    while out.shape[0] < ph or out.shape[1] < pw:
        dh = min(ph - out.shape[0], out.shape[0] - 1)
        dw = min(pw - out.shape[1], out.shape[1] - 1)
        if dh <= 0 and dw <= 0:  # 1-pixel images cannot be reflected
            return np.pad(out, ((0, ph - out.shape[0]), (0, pw - out.shape[1]), (0, 0)), mode="edge")
        out = np.pad(out, ((0, max(dh, 0)), (0, max(dw, 0)), (0, 0)), mode="reflect")
    assert out.shape[:2] == (ph, pw), (out.shape, ph, pw, h, w)
    return out


class Stitcher:
    """Blends weighted tile outputs (float32, CHW) into the output image one band of tile rows at a time.

    Only the output rows that later tiles can still touch are kept in float32 (about two tile rows);
    finished rows go straight to the uint8 result (and to a float32 copy when ``keep_float``), so
    memory stays bounded by the tile size and the output size, whatever the image size.
    """

    def __init__(self, grid: TileGrid, scale: int, keep_float: bool = False):
        self.grid = grid
        self.scale = s = scale
        self.out_h, self.out_w = grid.height * s, grid.width * s
        self.width = grid.padded_w * s
        wy = axis_weights(list(grid.ys), grid.tile_h, grid.margin, s)
        wx = axis_weights(list(grid.xs), grid.tile_w, grid.margin, s)
        self._wy = {y: w.astype(np.float32) for y, w in zip(grid.ys, wy)}
        self._wx = {x: w.astype(np.float32) for x, w in zip(grid.xs, wx)}
        self.result_u8 = np.empty((self.out_h, self.out_w, 3), dtype=np.uint8)
        self.result_f32 = np.empty((self.out_h, self.out_w, 3), dtype=np.float32) if keep_float else None
        self.lo = 0  # first output row still held in the band
        self.acc = np.zeros((3, 0, self.width), dtype=np.float32)
        self.wsum = np.zeros((0, self.width), dtype=np.float32)
        self._pending = {y: len(grid.xs) for y in grid.ys}

    def _grow(self, hi: int) -> None:
        rows = hi - (self.lo + self.acc.shape[1])
        if rows > 0:
            self.acc = np.concatenate([self.acc, np.zeros((3, rows, self.width), np.float32)], axis=1)
            self.wsum = np.concatenate([self.wsum, np.zeros((rows, self.width), np.float32)], axis=0)

    def add(self, origin: tuple[int, int], out: np.ndarray) -> None:
        y, x = origin
        s = self.scale
        if self.grid.count == 1:  # one tile: no blending, straight to the result
            chw = out[:, : self.out_h, : self.out_w]
            _quantize_into(self.result_u8, chw)
            if self.result_f32 is not None:
                self.result_f32[...] = chw.transpose(1, 2, 0)
            self._pending[y] -= 1
            return
        a, b = y * s, (y + self.grid.tile_h) * s
        self._grow(b)
        w = self._wy[y][:, None] * self._wx[x][None, :]
        rows = slice(a - self.lo, b - self.lo)
        cols = slice(x * s, (x + self.grid.tile_w) * s)
        self.acc[:, rows, cols] += out * w
        self.wsum[rows, cols] += w
        self._pending[y] -= 1
        self._flush()

    def _flush(self) -> None:
        """Finalise the rows that no unfinished tile row touches."""
        open_rows = [y for y in self.grid.ys if self._pending[y] > 0]
        limit = open_rows[0] * self.scale if open_rows else self.lo + self.acc.shape[1]
        n = limit - self.lo
        if n <= 0:
            return
        top = min(limit, self.out_h)
        if top > self.lo:
            k = top - self.lo
            blended = self.acc[:, :k, : self.out_w] / np.maximum(self.wsum[:k, : self.out_w], 1e-12)
            _quantize_into(self.result_u8[self.lo : top], blended)
            if self.result_f32 is not None:
                self.result_f32[self.lo : top] = blended.transpose(1, 2, 0)
        self.acc = self.acc[:, n:].copy()
        self.wsum = self.wsum[n:].copy()
        self.lo = limit

    @property
    def done(self) -> bool:
        return all(v == 0 for v in self._pending.values())


def _quantize_into(dst_hwc: np.ndarray, chw: np.ndarray) -> None:
    """round(clip(x, 0, 1) * 255) of float CHW into uint8 HWC: the arithmetic on contiguous CHW, one
    transposing copy at the end (half the time of doing it all on the transposed view)."""
    t = np.clip(chw, 0.0, 1.0)
    t *= 255.0
    np.rint(t, out=t)
    np.copyto(dst_hwc, t.transpose(1, 2, 0), casting="unsafe")


def extract_tiles(padded: np.ndarray, grid: TileGrid, origins: list[tuple[int, int]]) -> np.ndarray:
    """(N, 3, th, tw) float32 in [0, 1] from a padded uint8 or uint16 (H, W, 3) image."""
    th, tw = grid.tile_h, grid.tile_w
    batch = np.empty((len(origins), 3, th, tw), dtype=np.float32)
    for i, (y, x) in enumerate(origins):
        batch[i] = padded[y : y + th, x : x + tw].transpose(2, 0, 1)
    batch *= 1.0 / float(np.iinfo(padded.dtype).max)
    return batch

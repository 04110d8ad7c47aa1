"""MATLAB ``imresize(img, scale, 'bicubic')``, including its uint8 behaviour.

MATLAB resizes one axis at a time (the axis with the smaller scale first, rows on a tie), uses the
Keys cubic kernel (a = -0.5) widened by 1/scale when shrinking (antialiasing), mirrors at the borders,
and for uint8 input rounds (half away from zero) and saturates to uint8 after *each* pass. Benchmark
LR images were made this way, and calibration LR must be made the same way.
"""

from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def contributions(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len, P) and 0-based source indices (out_len, P) of one resize axis."""
    width = 4.0
    if scale < 1 and antialias:
        kernel = lambda x: scale * cubic(scale * x)  # noqa: E731
        width = width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, as_uint8: bool) -> np.ndarray:
    weights, idx = contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img.astype(np.float64), axis, 0)  # (L, ...)
    gathered = moved[idx]  # (out, P, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    out = np.moveaxis((gathered * w).sum(axis=1), 0, axis)
    if as_uint8:
        out = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)  # MATLAB round(), values >= -0.5
    return out


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize (H, W) or (H, W, C) by ``scale``; uint8 in gives uint8 out, float in gives float64."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    as_uint8 = img.dtype == np.uint8
    out = img
    for axis in (0, 1):  # equal scales on both axes: MATLAB's order is rows first
        out = _resize_axis(out, axis, int(math.ceil(img.shape[axis] * scale)), scale, as_uint8)
    return out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The standard SR degradation: modcrop, then MATLAB bicubic downscaling by ``scale``."""
    return imresize(modcrop(hr, scale), 1.0 / scale)

"""The one comparator of two model outputs (parity, selftest and the pipeline all use it)."""

from __future__ import annotations

import numpy as np


def compare(a: np.ndarray, b: np.ndarray, tol: float = 1e-3, clip: bool = True) -> dict:
    """Agreement of two outputs of the same shape: float in [0, 1] (unclamped model outputs) or uint8 images.

    ``clip``: compare the values clamped to [0, 1], as saved images see them. Returns ``max_abs``,
    ``mean_abs``, ``n_off`` / ``frac_off`` (values differing by more than ``tol``), ``n`` and ``psnr_db``
    (peak 1.0, i.e. 255 for uint8; inf when identical).
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare outputs of shapes {a.shape} and {b.shape}")
    a, b = (x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64) for x in (a, b))
    if clip:
        a, b = np.clip(a, 0.0, 1.0), np.clip(b, 0.0, 1.0)
    d = np.abs(a - b)
    mse = float(np.mean(d**2))
    n_off = int((d > tol).sum())
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "n_off": n_off, "n": int(d.size),
            "frac_off": n_off / d.size, "psnr_db": float("inf") if mse == 0 else float(-10 * np.log10(mse))}

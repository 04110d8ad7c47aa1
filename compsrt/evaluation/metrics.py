"""PSNR and SSIM on the Y channel, as the super-resolution literature (BasicSR / MATLAB) computes them."""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma for R, G, B in [0, 1], giving Y in [16, 235].
Y_COEFFS = np.array([65.481, 128.553, 24.966])


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float64 Y (H, W) = 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1]."""
    return 16.0 + (img.astype(np.float64) / 255.0) @ Y_COEFFS


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8, clamped and rounded, as saved model outputs are."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """20 log10(255 / sqrt(MSE)) in float64; inf for identical inputs."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with the 1-D window ``g`` along both axes."""
    k = len(g)
    h, w = img.shape
    rows = sum(g[i] * img[i : h - k + 1 + i] for i in range(k))
    return sum(g[i] * rows[:, i : w - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM map (11x11 Gaussian, sigma 1.5, valid region) of two single-channel [0, 255] images."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = gaussian_window()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def score_y(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[float, float]:
    """(PSNR, SSIM) of uint8 RGB ``sr`` against ``hr`` on Y with ``border`` pixels cropped.

    ``hr`` is cropped to the size of ``sr`` first (benchmark HR is not modcropped).
    """
    h, w = sr.shape[:2]
    if hr.shape[0] < h or hr.shape[1] < w:
        raise ValueError(f"HR {hr.shape[:2]} is smaller than the output {sr.shape[:2]}")
    ys = crop_border(rgb_to_y(sr), border)
    yh = crop_border(rgb_to_y(hr[:h, :w]), border)
    return psnr(ys, yh), ssim(ys, yh)

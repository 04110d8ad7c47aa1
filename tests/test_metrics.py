import numpy as np
import pytest

from compsrt.evaluation.metrics import psnr, rgb_to_y, score_y, ssim, to_uint8


def test_y_channel_matches_bt601_matlab_formula():
    px = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [10, 20, 30]]], dtype=np.uint8)
    expected = [235.0, 16.0, 16 + 65.481, 16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255]
    assert np.allclose(rgb_to_y(px)[0], expected)


def test_psnr_hand_computed():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    b[0, 0] = 16.0  # MSE = 256 / 16 = 16
    assert psnr(a, b) == pytest.approx(20 * np.log10(255 / 4))
    assert psnr(a, a) == float("inf")


def test_ssim_constant_images_hand_computed():
    a = np.full((20, 20), 100.0)
    b = np.full((20, 20), 120.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_drops_with_noise():
    rng = np.random.default_rng(0)
    a = np.tile(np.linspace(0, 255, 32), (32, 1))
    assert ssim(a, a + rng.normal(0, 20, a.shape)) < 0.5


def test_ssim_of_one_window_is_the_weighted_formula():
    """An 11x11 image has exactly one valid position: SSIM is the Gaussian-weighted statistic."""
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 255, (11, 11)), rng.uniform(0, 255, (11, 11))
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    ma, mb = (w * a).sum(), (w * b).sum()
    va, vb, cov = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2, (w * a * b).sum() - ma * mb
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_score_crops_hr_and_border():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (40, 41, 3), dtype=np.uint8)
    sr = hr[:36, :36].copy()
    sr[:2] = 0  # damage inside the 2-pixel border only
    p, s = score_y(sr, hr, border=2)
    assert p == float("inf") and s == pytest.approx(1.0)


def test_to_uint8_clamps_and_rounds():
    assert to_uint8(np.array([-0.1, 0.5 / 255, 1.5 / 255, 1.2])).tolist() == [0, 0, 2, 255]


def test_benchmark_scores_the_same_from_lossless_webp_copies(tmp_path):
    """prepare_carry --webp re-encodes a benchmark set; the scores from it equal those from the PNGs."""
    from PIL import Image

    from benchmarks.calibration.prepare_carry import copy_images
    from compsrt.errors import CompsrtError
    from compsrt.evaluation.benchmark import benchmark_pairs, bicubic_upscaler, evaluate_dataset

    rng = np.random.default_rng(0)
    png, webp = tmp_path / "png", tmp_path / "webp"
    for name in ("a", "b"):
        hr = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
        for sub, img, stem in (("HR", hr, name), ("LR_bicubic/X2", hr[::2, ::2], f"{name}x2")):
            (png / "Tiny" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(png / "Tiny" / sub / f"{stem}.png")
    for sub in ("HR", "LR_bicubic/X2"):
        copy_images(png / "Tiny" / sub, webp / "Tiny" / sub, webp=True)
    assert [p.suffix for _, lr, hr in benchmark_pairs(webp, "Tiny", 2) for p in (lr, hr)] == [".webp"] * 4
    scores = [evaluate_dataset(root, "Tiny", 2, bicubic_upscaler(2), "bicubic", progress=False).per_image
              for root in (png, webp)]
    assert scores[0] == scores[1]
    (webp / "Tiny" / "LR_bicubic" / "X2" / "bx2.webp").unlink()
    with pytest.raises(CompsrtError, match=r"bx2\.png \(or \.webp\) is missing"):
        benchmark_pairs(webp, "Tiny", 2)

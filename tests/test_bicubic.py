import numpy as np
import pytest

from compsrt.evaluation.bicubic import bicubic_degrade, imresize
from compsrt.images import load_image


def test_constant_image_stays_constant():
    img = np.full((12, 9, 3), 77, dtype=np.uint8)
    for s in (0.25, 0.5, 2, 3):
        out = imresize(img, s)
        assert out.dtype == np.uint8 and (out == 77).all()
        assert out.shape[:2] == (int(np.ceil(12 * s)), int(np.ceil(9 * s)))


def test_linear_ramp_is_reproduced_away_from_borders_when_upscaling():
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.float64), (4, 1))
    out = imresize(ramp, 2)
    # cubic convolution reproduces linear functions exactly; sample positions are (j + 0.5) / 2 - 0.5
    j = np.arange(8, 32)
    assert np.allclose(out[1, 8:32], 10 * ((j + 0.5) / 2 - 0.5))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_benchmark_lr_files(shared_data, scale):
    """The official LR images are MATLAB bicubic; allow MATLAB's own rounding-tie differences."""
    bench = shared_data / "benchmarks" / "Set5"
    total = off = 0
    for hr_path in sorted((bench / "HR").glob("*.png")):
        lr = load_image(bench / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png").rgb
        ours = bicubic_degrade(load_image(hr_path).rgb, scale)
        assert ours.shape == lr.shape
        diff = np.abs(ours.astype(int) - lr.astype(int))
        assert diff.max() <= 1
        off += int((diff > 0).sum())
        total += diff.size
    assert off / total < 0.01

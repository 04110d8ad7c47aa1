"""Regenerate compsrt/assets/sample.png: a synthetic 96x64 test card (no third-party image rights).

Rings, a zone plate, stripes at several frequencies and colour gradients: the structures on which
bicubic blurs and a super-resolution model should not.
"""

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 64, 96
y, x = np.mgrid[0:H, 0:W].astype(np.float64)
img = np.zeros((H, W, 3))
img[..., 0] = x / W
img[..., 1] = y / H
img[..., 2] = 0.5 + 0.5 * np.sin((x + y) / 9)
r2 = (x - 24) ** 2 + (y - 32) ** 2
zone = 0.5 + 0.5 * np.cos(r2 / 40)
img[r2 < 22**2] = zone[r2 < 22**2, None]
for i, period in enumerate((2, 3, 4, 6)):
    band = (slice(4 + 15 * i, 15 + 15 * i), slice(52, 92))
    img[band] = ((x[band] // (period / 2)) % 2)[..., None] * [0.9, 0.8, 0.2]
out = Path(__file__).resolve().parents[1] / "compsrt" / "assets" / "sample.png"
Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(out, optimize=True)
print(out)

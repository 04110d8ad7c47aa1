"""One picture to judge a super-resolution result: bicubic | FP | compressed | amplified difference.

Top row: the four full images; bottom row: the same zoomed crop of each (nearest-neighbour
enlargement, so pixels stay visible). The crop is where the compressed model differs most from the
FP model (the place a user should look); the difference map is |FP - compressed| times ``amplify``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path


def worst_crop(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window where |a - b| sums highest (integral image)."""
    h, w = a.shape[:2]
    size = min(size, h, w)
    d = np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=2).astype(np.int64)
    ii = np.pad(d.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(s)), s.shape)
    return int(y), int(x)


def comparison_image(path: str | Path, bicubic: np.ndarray, fp: np.ndarray, compressed: np.ndarray,
                     labels=("bicubic", "FP", "compressed (ONNX Runtime)"), amplify: int = 8,
                     crop: int | None = None, zoom_width: int | None = None) -> dict:
    """Write the comparison PNG; returns where the crop is and the amplification used."""
    from PIL import Image, ImageDraw

    h, w = fp.shape[:2]
    diff = np.clip(np.abs(fp.astype(np.int16) - compressed.astype(np.int16)) * amplify, 0, 255).astype(np.uint8)
    panels = [bicubic, fp, compressed, diff]
    names = list(labels) + [f"|FP - compressed| x{amplify}"]
    crop = crop or max(16, min(h, w) // 4)
    y, x = worst_crop(fp, compressed, crop)
    crop = min(crop, h, w)
    zw = zoom_width or w
    zoom = max(1, zw // crop)
    bar = 18
    canvas = Image.new("RGB", (4 * w + 3 * 4, h + bar + crop * zoom + bar), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (p, name) in enumerate(zip(panels, names)):
        left = i * (w + 4)
        canvas.paste(Image.fromarray(np.ascontiguousarray(p)), (left, bar))
        draw.text((left + 2, 3), name, fill=(0, 0, 0))
        draw.rectangle([left + x, bar + y, left + x + crop - 1, bar + y + crop - 1], outline=(255, 0, 0))
        z = Image.fromarray(np.ascontiguousarray(p[y : y + crop, x : x + crop])).resize((crop * zoom, crop * zoom),
                                                                                          Image.NEAREST)
        canvas.paste(z, (left, h + 2 * bar))
        draw.text((left + 2, h + bar + 3), f"{name}: zoom x{zoom} at ({x}, {y})", fill=(0, 0, 0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=1)
    return {"path": str(path), "crop": {"x": x, "y": y, "size": crop, "zoom": zoom}, "amplify": amplify}

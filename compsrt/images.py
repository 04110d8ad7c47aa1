"""Reading and writing images safely: size limits before decoding, clear errors, atomic writes.

Images are handled as uint8 RGB arrays (H, W, 3). Greyscale is replicated to three channels, as
BasicSR (OpenCV ``IMREAD_COLOR``) does; an alpha channel is split off so callers can carry it along.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CompsrtError
from .files import atomic_path

DEFAULT_MAX_PIXELS = 64_000_000  # input pixels; override with $COMPSRT_MAX_PIXELS or max_pixels=
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_PILLOW_LIMIT = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}


@dataclass
class LoadedImage:
    rgb: np.ndarray  # uint8 (H, W, 3)
    alpha: np.ndarray | None  # uint8 (H, W) or None
    mode: str  # the file's original mode


def max_pixels() -> int:
    return int(os.environ.get("COMPSRT_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def check_size(path: Path, w: int, h: int, limit: int) -> None:
    """Refuse an image from its header: above ``limit`` pixels (decompression bombs) or empty."""
    if w * h > limit:
        raise CompsrtError(f"image {path} is {w}x{h} = {w * h:,} pixels, above the limit of {limit:,}; "
                           "raise it with --max-pixels or COMPSRT_MAX_PIXELS if the file is trusted")
    if w == 0 or h == 0:
        raise CompsrtError(f"image {path} is empty ({w}x{h})")


def load_image(path: str | os.PathLike, limit: int | None = None) -> LoadedImage:
    """Decode ``path`` into uint8 RGB (+ alpha), refusing oversize images before decoding pixels."""
    path = Path(path)
    limit = limit or max_pixels()
    if not path.is_file():
        raise CompsrtError(f"image {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open_header(path)
            w, h = img.size
            check_size(path, w, h, limit)
            img.load()
    except CompsrtError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CompsrtError(f"image {path} refused as a possible decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise CompsrtError(f"{path} is not an image Pillow can read (PNG, JPEG, BMP, TIFF, WebP)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise CompsrtError(f"image {path} is corrupt or truncated: {exc}") from None
    return _to_rgb(img, path)


def _open_header(path: Path) -> Image.Image:
    """``Image.open`` (header only) without Pillow's own pixel limit: ours is checked right after it, and
    Pillow's fixed 89.5 MP would otherwise refuse images the user allowed with --max-pixels."""
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(img: Image.Image, path: Path) -> LoadedImage:
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        raise CompsrtError(
            f"image {path} has {mode} samples (16-bit or float); convert it to 8-bit per channel first, "
            "e.g. `convert in.png -depth 8 out.png`"
        )
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    alpha = None
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
        img = img.convert("RGB")
        if alpha.min() == 255:
            alpha = None
    elif img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise CompsrtError(f"image {path} has mode {mode}, which cannot be converted to RGB: {exc}") from None
    return LoadedImage(np.asarray(img, dtype=np.uint8).copy(), alpha, mode)


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
               pillow_kwargs: dict | None = None) -> None:
    """Write uint8 RGB (and optional alpha) atomically; the format follows the file extension.

    ``pillow_kwargs`` are the encoder's options (:class:`compsrt.encoding.EncodeOptions`); default JPEG quality 95.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CompsrtError(f"cannot write {path}: use one of the extensions {', '.join(SAVE_FORMATS)}")
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if alpha is not None:
        if fmt == "JPEG":
            raise CompsrtError(f"{path}: JPEG cannot store the input's alpha channel; write a .png instead")
        img.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    with atomic_path(path) as tmp:
        if pillow_kwargs is None:
            pillow_kwargs = {"quality": 95} if fmt == "JPEG" else {}
        img.save(tmp, format=fmt, **pillow_kwargs)

"""Output encoding options and 16-bit image I/O.

* :class:`EncodeOptions`: PNG compression level (default :data:`DEFAULT_PNG_LEVEL`, chosen by
  ``benchmarks/encoding/bench_png.py``: on 1280x720 SR-like outputs zlib level 1 encodes 9x faster
  than Pillow's default 6 for files 17 % larger; level 0 is faster still but files triple),
  JPEG and WebP quality, lossless WebP.
* :func:`png_bytes`: the 8-bit PNG writer. Pillow spends about half its level-1 time applying its
  filter (its level 0, no deflate, takes 0.44x of level 1's time); here every row takes PNG's
  Average filter (numpy; the smallest files of the five filters on SR outputs) and levels 1-3
  deflate with ISA-L (``isal``; zlib's same levels where it is not installed): on the H200 host 6.5x
  faster than Pillow at level 1 for files 5.6 % smaller (``benchmarks/encoding/bench_writers.py``).
* 16-bit PNG and TIFF (greyscale or RGB, with or without alpha) load as uint16 and save as uint16:
  the model works in float, so a 16-bit input is upscaled without an 8-bit round trip. Pillow reads
  48/64-bit PNGs as 8-bit silently, so the bit depth is taken from the file header and such files
  are decoded with pypng (PNG) or tifffile (TIFF). 8-bit files go through :mod:`compsrt.images`.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CompsrtError
from .files import atomic_path, atomic_write_bytes
from .images import SAVE_FORMATS, LoadedImage, check_size, load_image, max_pixels, save_image

DEFAULT_PNG_LEVEL = 1  # see benchmarks/encoding/results/cpu_png_levels/results.json
DEFAULT_JPEG_QUALITY = 95
DEFAULT_WEBP_QUALITY = 90
SIXTEEN_BIT_SAVE = {".png", ".tif", ".tiff"}
PNG_WRITERS = ("compsrt", "pillow")


@dataclass(frozen=True)
class EncodeOptions:
    png_level: int = DEFAULT_PNG_LEVEL
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    webp_quality: int = DEFAULT_WEBP_QUALITY
    webp_lossless: bool = False
    png_writer: str = "compsrt"  # or "pillow": Pillow's encoder, the writer before png_bytes (benchmarks' before)

    def __post_init__(self):
        if self.png_writer not in PNG_WRITERS:
            raise CompsrtError(f"PNG writer must be one of {', '.join(PNG_WRITERS)}, got {self.png_writer!r}")
        if not 0 <= self.png_level <= 9:
            raise CompsrtError(f"--png-level must be 0..9 (zlib level), got {self.png_level}")
        for name, q in (("--jpeg-quality", self.jpeg_quality), ("--webp-quality", self.webp_quality)):
            if not 1 <= q <= 100:
                raise CompsrtError(f"{name} must be 1..100, got {q}")

    def pillow_kwargs(self, fmt: str) -> dict:
        if fmt == "PNG":
            return {"compress_level": self.png_level}
        if fmt == "JPEG":
            return {"quality": self.jpeg_quality}
        if fmt == "WEBP":
            return {"quality": self.webp_quality, "lossless": self.webp_lossless}
        return {}


def add_encode_args(p) -> None:
    g = p.add_argument_group("encoding")
    g.add_argument("--png-level", type=int, default=DEFAULT_PNG_LEVEL,
                   help=f"PNG deflate level 0-9 (default {DEFAULT_PNG_LEVEL}, chosen by benchmarks/encoding/bench_png.py)")
    g.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help=f"JPEG quality 1-100 (default {DEFAULT_JPEG_QUALITY})")
    g.add_argument("--webp-quality", type=int, default=DEFAULT_WEBP_QUALITY, help=f"WebP quality 1-100 (default {DEFAULT_WEBP_QUALITY})")
    g.add_argument("--webp-lossless", action="store_true", help="lossless WebP")
    g.add_argument("--png-writer", choices=PNG_WRITERS, default="compsrt",
                   help="8-bit PNG encoder (default compsrt: Average filter + ISA-L deflate, 6.5x faster than pillow at level 1)")


def options_from_args(args) -> EncodeOptions:
    return EncodeOptions(getattr(args, "png_level", DEFAULT_PNG_LEVEL), getattr(args, "jpeg_quality", DEFAULT_JPEG_QUALITY),
                         getattr(args, "webp_quality", DEFAULT_WEBP_QUALITY), getattr(args, "webp_lossless", False),
                         getattr(args, "png_writer", "compsrt"))


# ------------------------------------------------------------------------------------------ reading
def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _tiff_bits(path: Path) -> int | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format != "TIFF":
                return None
            bits = img.tag_v2.get(258)
    except Exception:
        return None
    if bits is None:
        return None
    return int(bits[0] if isinstance(bits, tuple) else bits)


def is_16bit(path: str | os.PathLike) -> bool:
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            return _png_bit_depth(path) == 16
        if suffix in (".tif", ".tiff"):
            return _tiff_bits(path) == 16
    except OSError:
        return False
    return False


def _split16(arr: np.ndarray, path: Path) -> LoadedImage:
    """(H, W[, C]) uint16 -> RGB uint16 + alpha uint16 (greyscale replicated, as the 8-bit path)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    c = arr.shape[2]
    if c not in (1, 2, 3, 4):
        raise CompsrtError(f"image {path} has {c} channels; expected grey, grey+alpha, RGB or RGBA")
    alpha = arr[..., -1].copy() if c in (2, 4) else None
    colour = arr[..., :3] if c >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    if alpha is not None and alpha.min() == 65535:
        alpha = None
    mode = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[c]
    return LoadedImage(np.ascontiguousarray(colour, dtype=np.uint16), alpha, mode)


def load_image_any(path: str | os.PathLike, limit: int | None = None) -> LoadedImage:
    """8-bit files as :func:`compsrt.images.load_image`; 16-bit PNG/TIFF as uint16 (``rgb.dtype``)."""
    path = Path(path)
    if not path.is_file() or not is_16bit(path):
        return load_image(path, limit=limit)
    limit = limit or max_pixels()
    try:
        if path.suffix.lower() == ".png":
            import png

            r = png.Reader(filename=str(path))
            w, h, _, info = r.read()  # header only; rows are read lazily
            check_size(path, w, h, limit)
            w, h, rows, info = png.Reader(filename=str(path)).asDirect()
            planes = info["planes"]
            arr = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(h, w, planes)
        else:
            import tifffile

            with tifffile.TiffFile(path) as tf:
                page = tf.pages[0]
                check_size(path, page.imagewidth, page.imagelength, limit)
                arr = page.asarray()
            if arr.dtype != np.uint16:
                raise CompsrtError(f"image {path} has {arr.dtype} samples; 16-bit TIFFs must be unsigned integer")
            if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
                arr = arr.transpose(1, 2, 0)  # planar
    except CompsrtError:
        raise
    except ImportError as exc:
        raise CompsrtError(f"reading 16-bit {path.suffix} needs {exc.name}: pip install pypng tifffile") from None
    except Exception as exc:  # pypng / tifffile raise their own types
        raise CompsrtError(f"16-bit image {path} is corrupt or unsupported: {exc}") from None
    return _split16(arr, path)


# ------------------------------------------------------------------------------------------ writing
def save_image_any(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
                   options: EncodeOptions | None = None) -> None:
    """Write uint8 or uint16 RGB (+ alpha of the same depth) atomically; format from the extension."""
    path = Path(path)
    o = options or EncodeOptions()
    suffix = path.suffix.lower()
    fmt = SAVE_FORMATS.get(suffix)
    if fmt is None:
        raise CompsrtError(f"cannot write {path}: use one of the extensions {', '.join(SAVE_FORMATS)}")
    if rgb.dtype == np.uint16:
        return _save16(path, rgb, alpha, o)
    if alpha is not None and fmt == "BMP":  # save_image refuses JPEG alpha the same way
        raise CompsrtError(f"{path}: {fmt} cannot store the input's alpha channel; write a .png instead")
    if fmt == "PNG" and o.png_writer == "compsrt":
        arr = rgb if alpha is None else np.dstack([rgb, alpha.astype(np.uint8)])
        atomic_write_bytes(path, png_bytes(arr, o.png_level))
        return
    save_image(path, rgb, alpha, o.pillow_kwargs(fmt))


def _average_filtered(rows: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter type 3 on every row: byte - floor((left + up) / 2), mod 256, each row led by its type byte."""
    h, n = rows.shape
    out = np.empty((h, n + 1), np.uint8)
    out[:, 0] = 3
    pred = np.empty((h, n), np.uint16)
    pred[0, :bpp] = 0
    pred[0, bpp:] = rows[0, :-bpp]  # first row: no row above
    pred[1:, :bpp] = rows[:-1, :bpp]  # first pixel: nothing to the left
    np.add(rows[1:, :-bpp], rows[:-1, bpp:], out=pred[1:, bpp:], dtype=np.uint16)
    pred >>= 1
    np.subtract(rows, pred, out=out[:, 1:], dtype=np.uint8, casting="unsafe")
    return out


def _deflate(data: np.ndarray, level: int) -> bytes:
    if 1 <= level <= 3:
        try:
            from isal import isal_zlib
        except ImportError:
            pass
        else:
            return isal_zlib.compress(data, level)
    return zlib.compress(data, level)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def png_bytes(arr: np.ndarray, level: int = DEFAULT_PNG_LEVEL) -> bytes:
    """An 8-bit grey (H, W), RGB or RGBA (H, W, 1|3|4) array as a PNG file's bytes, zlib level 0-9."""
    if arr.dtype != np.uint8:
        raise CompsrtError(f"png_bytes writes 8-bit images, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    colour = {1: 0, 3: 2, 4: 6}.get(c)
    if colour is None:
        raise CompsrtError(f"png_bytes writes grey, RGB or RGBA images, got {c} channels")
    rows = np.ascontiguousarray(arr).reshape(h, w * c)
    idat = _deflate(_average_filtered(rows, c), level)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def _save16(path: Path, rgb: np.ndarray, alpha: np.ndarray | None, o: EncodeOptions) -> None:
    suffix = path.suffix.lower()
    if suffix not in SIXTEEN_BIT_SAVE:
        raise CompsrtError(f"{path}: a 16-bit result cannot be written as {suffix}; use .png or .tif "
                           "(or convert the input to 8-bit first)")
    arr = rgb if alpha is None else np.concatenate([rgb, alpha[..., None].astype(np.uint16)], axis=2)
    h, w, c = arr.shape
    with atomic_path(path) as tmp:
        if suffix == ".png":
            import png

            writer = png.Writer(w, h, greyscale=False, alpha=c == 4, bitdepth=16, compression=o.png_level)
            with open(tmp, "wb") as f:
                writer.write_array(f, arr.reshape(-1))
        else:
            import tifffile

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tifffile.imwrite(tmp, arr, photometric="rgb", compression="zlib" if o.png_level else None,
                                 extrasamples=["unassalpha"] if c == 4 else None)


def to_8bit(rgb16: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by rounding (x / 257), the reduction image tools apply."""
    return np.round(rgb16.astype(np.float64) / 257.0).astype(np.uint8)


"""The largest tile SwinIR-light can be run or exported at, from its largest tensor (no torch import).

The largest activation is the window attention's score tensor: per window of ``WINDOW`` x ``WINDOW`` LR
pixels, ``HEADS`` heads of ``WINDOW**2`` x ``WINDOW**2`` scores, i.e. ``HEADS * WINDOW**2`` = 384 values per
LR pixel (the MLP holds 120, the upsampler at most 48). One tensor must stay below 2**31 elements: TensorRT's
layers and plugins index tensors with int32 (NVIDIA/TensorRT#3815), as do many CUDA kernels. That gives
:data:`MAX_TILE_PIXELS` LR pixels per tile (about 2360 x 2360) for batch 1; a batch divides it. At the limit
this one tensor alone is 8 GiB in FP32, so the limit is the point beyond which no build can succeed, not a
size that fits every device.
"""

from __future__ import annotations

HEADS, WINDOW = 6, 8  # SwinIRConfig's num_heads (every stage) and window_size: tests/test_cli.py checks them
SCORES_PER_PIXEL = HEADS * WINDOW * WINDOW
MAX_TENSOR_ELEMENTS = 2**31 - 1
MAX_TILE_PIXELS = MAX_TENSOR_ELEMENTS // SCORES_PER_PIXEL  # 5,592,405


def tile_limit_error(tile: tuple[int, int], batch: int = 1) -> str | None:
    """Why the (h, w) ``tile`` (times ``batch``) is too large, naming the limit; None when it fits."""
    h, w = tile
    if h * w * batch <= MAX_TILE_PIXELS:
        return None
    per = f" per tile at batch {batch}" if batch > 1 else ""
    side = int((MAX_TILE_PIXELS / batch) ** 0.5) // WINDOW * WINDOW
    return (f"tile {w}x{h} is too large: at most {MAX_TILE_PIXELS // batch:,} LR pixels{per} (e.g. {side}x{side}), "
            f"since its attention scores ({SCORES_PER_PIXEL} values per pixel) must stay below 2^31 elements, "
            "the limit of one TensorRT tensor; use a smaller tile")

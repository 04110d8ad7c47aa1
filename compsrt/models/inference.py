"""Whole-image inference with a torch model on uint8 RGB arrays."""

from __future__ import annotations

import numpy as np
import torch

from ..evaluation.metrics import to_uint8


@torch.inference_mode()
def upscale_array(model: torch.nn.Module, rgb: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """uint8 RGB (H, W, 3) -> uint8 RGB (sH, sW, 3): clamped to [0, 1] and rounded."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 255.0
    y = model(x)[0].permute(1, 2, 0).float().cpu().numpy()
    return to_uint8(y)

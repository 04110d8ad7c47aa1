from pathlib import Path

import numpy as np
import pytest
import torch

from compsrt.models.swinir import SwinIR, SwinIRConfig, SwinTransformerBlock, WindowAttention
from compsrt.paths import data_root

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not (root / "benchmarks").is_dir():
        pytest.skip(f"shared data not found at {root} (set COMPSRT_DATA)")
    return root


@pytest.fixture
def tiny_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (13, 11, 3), dtype=np.uint8)


def official_format_state(scale: int, seed: int = 0) -> dict:
    """A random SwinIR-light state dict laid out like the official release, buffers included."""
    torch.manual_seed(seed)
    model = SwinIR(SwinIRConfig(scale=scale))
    state = dict(model.state_dict())
    for name, mod in model.named_modules():
        if isinstance(mod, WindowAttention):
            state[f"{name}.relative_position_index"] = mod.rel_index.clone()
        if isinstance(mod, SwinTransformerBlock) and mod.shift_size > 0:
            state[f"{name}.attn_mask"] = torch.zeros(64, 64, 64)
    return {"params": state}


@pytest.fixture
def x2_weights(tmp_path) -> Path:
    path = tmp_path / "official_x2.pth"
    torch.save(official_format_state(2), path)
    return path

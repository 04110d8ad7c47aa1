from pathlib import Path

import numpy as np
import pytest
import torch

from compsrt.models.swinir import SwinIR, SwinIRConfig, SwinTransformerBlock, WindowAttention
from compsrt.paths import data_root

torch.set_num_threads(2)


def tiny_swinir(scale: int = 2, seed: int = 0, gain: float | None = None, noise: float | None = None) -> SwinIR:
    """The tiny SwinIR of the CPU tests: one RSTB of two Swin blocks (6 heads), eval mode, fixed seed.

    ``gain`` multiplies the 2-D weights (larger than the init, so quantization matters); ``noise`` adds
    ``noise * randn`` to every parameter (non-trivial biases and position tables, so mistakes show).
    """
    torch.manual_seed(seed)
    m = SwinIR(SwinIRConfig(scale=scale, depths=(2,), num_heads=(6,))).eval()
    with torch.no_grad():
        for p in m.parameters():
            if gain is not None and p.ndim == 2:
                p.mul_(gain)
            if noise is not None:
                p.add_(noise * torch.randn_like(p))
    return m


def pytest_collection_modifyitems(config, items):
    """The one GPU marker: tests marked ``gpu`` skip cleanly on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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

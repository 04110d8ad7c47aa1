from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compsrt.models.swinir import SwinIR, SwinIRConfig, SwinTransformerBlock, WindowAttention
from compsrt.paths import data_root

torch.set_num_threads(2)
RUNTIME_TILE = 32  # LR tile of the exported tiny model


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


_CONFORMANCE: list = []  # tests/test_conformance.py's results, printed by pytest_terminal_summary


@pytest.fixture(scope="session")
def conformance_report() -> list:
    """Where tests/test_conformance.py leaves its results for the terminal summary (this module's own list)."""
    return _CONFORMANCE


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The conformance table (artifact x tool -> loads, runs, max difference) in the log of every run that made it."""
    for results in _CONFORMANCE:
        terminalreporter.section("export conformance: every `compsrt export` artifact in the tools users run")
        terminalreporter.write_line(results.table())
        terminalreporter.write_line(f"{len(results.rows)} rows, {len(results.refused)} refused combinations, "
                                    f"{results.seconds} s; all as expected: {results.all_ok}")


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


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny SwinIR x2 (seed 0) that the runtime tests run."""
    return tiny_swinir()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory):
    """The tiny model exported at a fixed RUNTIME_TILE (32) tile, batch 2 (stand-in for `compsrt export` output)."""
    import warnings

    from compsrt.export.exporter import ExportOptions, export_model

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(tiny_model, path, ExportOptions(tile=(RUNTIME_TILE, RUNTIME_TILE), batch=2, hadamard="matmul"))
    return path


@pytest.fixture(scope="session")
def image():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (15, 19, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((75, 58), Image.BICUBIC))  # smooth-ish, not window multiples

"""GPU parts of the runtime: the cuda-python / pycuda device-memory layer and the torch CUDA backend.

Skipped cleanly without CUDA.
"""

import numpy as np
import pytest
import torch

from compsrt.runtime.backends import TorchBackend
from compsrt.runtime.timing import StageTimer
from compsrt.runtime.upscaler import TiledUpscaler
from tests.conftest import tiny_swinir

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("prefer", ["cuda-python", "pycuda"])
def test_device_layer_roundtrip(prefer):
    from compsrt.runtime import devmem

    if prefer == "pycuda":
        pytest.importorskip("pycuda.driver")
        layer = devmem.PyCudaLayer(0)
    else:
        try:
            layer = devmem.CudaPythonLayer(0)
        except ImportError:
            pytest.skip("cuda-python not installed")
    name, cc = layer.device_info()
    assert name and cc[0] >= 5
    src = layer.pinned((4, 3, 8, 8), np.float32)
    src[...] = np.arange(src.size, dtype=np.float32).reshape(src.shape)
    dst = layer.pinned((4, 3, 8, 8), np.float32)
    dst[...] = 0
    d = layer.alloc(src.nbytes)
    e0, e1 = layer.event(), layer.event()
    layer.record(e0)
    layer.htod_async(d, src)
    layer.dtoh_async(dst, d)
    layer.record(e1)
    layer.synchronize()
    assert np.array_equal(src, dst) and layer.elapsed_s(e0, e1) >= 0
    free, total = layer.mem_info()
    assert 0 < free <= total
    layer.free(d)
    layer.close()


def test_torch_cuda_backend_tiled_matches_cpu_whole():
    model = tiny_swinir(2, 0)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cpu_whole = TiledUpscaler(TorchBackend(model), tile=0).upscale(img, keep_float=True)
    gb = TorchBackend(tiny_swinir(2), "cuda")
    gb.model.load_state_dict(model.state_dict())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    timer = StageTimer()
    r = TiledUpscaler(gb, tile=0).upscale(img, timer, keep_float=True)
    assert np.abs(r.rgb_float - cpu_whole.rgb_float).max() < 1e-3
    assert timer.seconds["compute"] > 0 and timer.seconds["h2d"] > 0 and timer.seconds["d2h"] > 0
    assert gb.memory()["device_peak_bytes"] > 0


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_graph_replay_matches_eager_per_shape(dtype):
    """Graph replays equal the eager model for two shapes, repeatedly (static buffers refilled each call)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny_swinir(2, 0)
    eager = TorchBackend(model, "cuda", dtype)
    graphed = TorchBackend(tiny_swinir(2, 0), "cuda", dtype, cuda_graph=True)
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 16, 16), (1, 3, 16, 24), (2, 3, 16, 16)]:
        x = rng.random(shape, dtype=np.float32)
        want = eager.run(x, StageTimer())
        got = graphed.run(x, StageTimer())
        assert got.shape == want.shape
        assert np.abs(got - want).max() < (1e-5 if dtype == "fp32" else 2e-2)
    assert len(graphed._graphs) == 2


def test_cuda_graph_pipelined_folder_matches_eager(tmp_path):
    """The pipelined upscaler over a folder with a graphed backend writes what the eager backend writes."""
    from PIL import Image

    from compsrt.runtime.pipelined import PipelinedUpscaler

    rng = np.random.default_rng(2)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(src / f"{i}.png")
    outs = {}
    for graph in (False, True):
        up = TiledUpscaler(TorchBackend(tiny_swinir(2, 0), "cuda", cuda_graph=graph), tile=16, overlap=4, batch=2)
        pairs = [(p, tmp_path / f"out{int(graph)}" / p.name) for p in sorted(src.glob("*.png"))]
        (tmp_path / f"out{int(graph)}").mkdir()
        results = list(PipelinedUpscaler(up, host_workers=2).run(pairs))
        assert all(r.ok for r in results), [r.error for r in results]
        outs[graph] = [np.asarray(Image.open(d)) for _, d in pairs]
    for a, b in zip(outs[False], outs[True]):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1

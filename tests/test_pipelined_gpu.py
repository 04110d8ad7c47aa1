"""The pipelined upscaler on CUDA: two device workers, each with its own stream, give the sequential result."""

import numpy as np
import pytest
import torch
from PIL import Image

from compsrt.models.swinir import SwinIR, SwinIRConfig
from compsrt.runtime.backends import TorchBackend
from compsrt.runtime.pipelined import PipelinedUpscaler
from compsrt.runtime.upscaler import TiledUpscaler

pytestmark = pytest.mark.gpu


def test_pipelined_streams_match_sequential(tmp_path):
    torch.manual_seed(0)
    up = TiledUpscaler(TorchBackend(SwinIR(SwinIRConfig(scale=2)), "cuda"), tile=32, overlap=8, batch=2)
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    pairs = []
    for i in range(8):
        a = rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / "in" / f"{i}.png")
        pairs.append((tmp_path / "in" / f"{i}.png", tmp_path / "out" / f"{i}.png"))
    pipe = PipelinedUpscaler(up, host_workers=4, device_workers=2)
    assert pipe.device_workers == 2
    results = list(pipe.run(pairs))
    assert all(r.ok for r in results) and [r.src for r in results] == [p[0] for p in pairs]
    for s, d in pairs:
        ref = up.upscale(np.asarray(Image.open(s))).rgb
        assert np.abs(np.asarray(Image.open(d)).astype(int) - ref).max() <= 1

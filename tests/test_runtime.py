"""Runtime: tiling, backends (torch / ONNX Runtime), engine build + sidecar checks, profile (upscale CLI: test_upscale.py).

Fast by construction: a reduced-depth SwinIR (one RSTB of 2 blocks) and tiles of 24-32.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compsrt.cli import main
from compsrt.errors import CompsrtError
from compsrt.models.swinir import SwinIR, SwinIRConfig
from compsrt.runtime.backends import OrtBackend, TorchBackend
from compsrt.runtime.tiling import axis_weights, plan, tile_starts
from compsrt.runtime.upscaler import TiledUpscaler
from tests.conftest import RUNTIME_TILE

TILE = RUNTIME_TILE


def interior_mask(grid, scale):
    """Output pixels covered by exactly one tile (away from every seam)."""
    cov = np.zeros((grid.padded_h, grid.padded_w), int)
    for y, x in grid.origins():
        cov[y : y + grid.tile_h, x : x + grid.tile_w] += 1
    m = (cov == 1)[: grid.height, : grid.width]
    return np.repeat(np.repeat(m, scale, 0), scale, 1)


@pytest.fixture(scope="module")
def whole(tiny_model, image):
    return TiledUpscaler(TorchBackend(tiny_model), tile=0).upscale(image, keep_float=True)


# --------------------------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("length,tile,overlap", [(32, 32, 8), (40, 32, 8), (104, 32, 16), (200, 64, 16), (97 + 7, 24, 8)])
def test_tile_starts_cover_aligned_and_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap, 8)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(s % 8 == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap


def test_blend_weights_partition_of_unity():
    starts = tile_starts(104, 32, 16, 8)
    ws = axis_weights(starts, 32, margin=4, scale=2)
    total = np.zeros(104 * 2)
    for s, w in zip(starts, ws):
        total[s * 2 : (s + 32) * 2] += w
    assert np.allclose(total, 1.0)
    assert all(w[:8].max() == 0 for w in ws[1:])  # the margin at internal edges never contributes


def test_plan_errors():
    with pytest.raises(CompsrtError, match="empty"):
        plan(0, 5, 32)
    with pytest.raises(CompsrtError, match="multiple of the window"):
        plan(40, 40, 30)
    with pytest.raises(CompsrtError, match="more than half"):
        plan(40, 40, 32, overlap=20)


# ------------------------------------------------------------------------------------ tiled == whole
@pytest.mark.parametrize("tile,overlap", [(32, 16), (24, 8)])
def test_torch_tiled_equals_whole_away_from_seams(tiny_model, image, whole, tile, overlap):
    up = TiledUpscaler(TorchBackend(tiny_model), tile=tile, overlap=overlap, batch=3)
    r = up.upscale(image, keep_float=True)
    grid = up._grid(*image.shape[:2])
    assert grid.count > 1
    m = interior_mask(grid, 2)
    diff = np.abs(r.rgb_float - whole.rgb_float)
    # Interior pixels at least `overlap` from any internal edge; with 16 the tiny model's context fits.
    if overlap >= 16:
        assert diff[m].max() < 1e-4
        assert diff.max() < 5e-3  # seams: a smooth blend of two nearly equal tiles
        assert np.abs(r.rgb.astype(int) - whole.rgb).max() <= 2
    else:  # little context: a random tiny model differs more near tile edges, still far below a grey level
        assert diff.max() < 0.05 and np.mean(diff) < 1e-3


def test_cuda_graph_needs_cuda(tiny_model, tmp_path, capsys):
    with pytest.raises(CompsrtError, match="--cuda-graph needs a CUDA device"):
        TorchBackend(tiny_model, "cpu", cuda_graph=True)
    img = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert main(["upscale", str(img), str(tmp_path / "out.png"), "--device", "cpu", "--cuda-graph"]) == 2
    assert "--cuda-graph needs a CUDA device" in capsys.readouterr().err


def test_small_image_runs_whole(tiny_model):
    img = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)
    up = TiledUpscaler(TorchBackend(tiny_model), tile=TILE)
    r = up.upscale(img, keep_float=True)
    with torch.no_grad():
        ref = tiny_model(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
    assert r.rgb.shape == (26, 22, 3) and np.abs(r.rgb_float - ref).max() < 1e-5


def test_one_pixel_and_thin_images(tiny_model):
    up = TiledUpscaler(TorchBackend(tiny_model), tile=TILE)
    for shape in [(1, 1, 3), (1, 40, 3), (37, 2, 3)]:
        out = up.upscale(np.full(shape, 100, np.uint8)).rgb
        assert out.shape == (shape[0] * 2, shape[1] * 2, 3)


# ------------------------------------------------------------------------------------- onnxruntime
def test_ort_matches_torch_and_whole(tiny_model, tiny_onnx, image, whole):
    ort_b = OrtBackend(tiny_onnx)
    assert ort_b.tile == (TILE, TILE) and ort_b.batch == 2 and ort_b.scale == 2
    up_ort = TiledUpscaler(ort_b, overlap=16)
    up_t = TiledUpscaler(TorchBackend(tiny_model), tile=TILE, overlap=16)
    r_ort = up_ort.upscale(image, keep_float=True)  # 3 batches incl. a padded one
    r_t = up_t.upscale(image, keep_float=True)
    assert np.abs(r_ort.rgb_float - r_t.rgb_float).max() <= 1e-3  # same model, two backends
    assert np.abs(r_ort.rgb.astype(int) - r_t.rgb).max() <= 1
    m = interior_mask(up_ort._grid(*image.shape[:2]), 2)
    assert np.abs(r_ort.rgb_float - whole.rgb_float)[m].max() < 1e-4


def test_ort_refuses_other_tile(tiny_onnx):
    with pytest.raises(CompsrtError, match="fixed tile"):
        TiledUpscaler(OrtBackend(tiny_onnx), tile=64)
    with pytest.raises(CompsrtError, match="does not exist"):
        OrtBackend(tiny_onnx.with_name("nope.onnx"))


def test_set5_tiled_vs_whole_small(shared_data):
    """CI-sized version of the Set5 check (the real model at tiles 64/96 is in docs/runtime.md):
    a reduced-depth x4 model on the Set5 x4 LR images, tiles of 32."""
    from compsrt.evaluation.benchmark import evaluate_dataset

    torch.manual_seed(0)
    b = TorchBackend(SwinIR(SwinIRConfig(scale=4, embed_dim=24, depths=(2,), num_heads=(3,))).eval())
    root = shared_data / "benchmarks"
    w = evaluate_dataset(root, "Set5", 4, TiledUpscaler(b, tile=0).upscale_array, "whole", progress=False)
    t = evaluate_dataset(root, "Set5", 4, TiledUpscaler(b, tile=TILE, overlap=16, batch=8).upscale_array, "t", progress=False)
    assert w.n == 5 and abs(t.psnr - w.psnr) < 0.01


def test_fixed_batch_padding(tiny_onnx):
    b = OrtBackend(tiny_onnx)
    x = np.random.default_rng(0).random((3, 3, TILE, TILE), dtype=np.float32)
    y = b.run(x)
    assert y.shape == (3, 3, 2 * TILE, 2 * TILE)
    assert np.allclose(y[2:], b.run(x[2:]), atol=1e-6)


# ------------------------------------------------------------------------------------------ profile
def test_profile_json_plot_compare(tmp_path, tiny_onnx, capsys):
    a, b, png = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "p.png"
    args = ["profile", "--backend", "onnxruntime", "--onnx", str(tiny_onnx), "--size", "40x30", "--iters", "2",
            "--warmup", "1"]
    assert main(args + ["--json", str(a), "--plot", str(png)]) == 0
    assert main(args + ["--json", str(b), "--label", "again"]) == 0
    p = json.loads(a.read_text())
    assert set(p["stages"]) >= {"decode", "tiling", "h2d", "compute", "d2h", "stitching", "encode"}
    assert p["stages"]["compute"]["mean_ms"] > 0 and p["output"]["width"] == 80
    assert {"p50", "p90", "p99", "min", "max"} <= set(p["end_to_end_ms"])
    assert p["throughput"]["images_per_s"] > 0 and p["memory"]["host_peak_bytes"] > 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["profile", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "B/A" in out and "end-to-end p50" in out
    assert main(["profile", "--backend", "trt", "--size", "4x4"]) == 2
    assert "--engine" in capsys.readouterr().err


def test_profile_says_when_the_compressed_model_is_slower_than_fp(tiny_onnx, capsys):
    from compsrt.runtime.profile import fp_comparison, summary_text

    def prof(p50):
        return {"label": "x", "backend": {"backend": "onnxruntime"}, "end_to_end_ms": {"p50": p50},
                "stages": {"compute": {"mean_ms": p50 - 1}}}

    slow = fp_comparison(prof(356.0), prof(175.0))
    assert slow["slower_than_fp"] and slow["ratio_p50"] == pytest.approx(356 / 175)
    fast = fp_comparison(prof(100.0), prof(175.0))
    assert not fast["slower_than_fp"]
    p = json.loads(json.dumps(_profile_of(tiny_onnx)))  # a real profile, with the comparison attached
    p["fp_reference"] = slow
    text = summary_text(p)
    assert "2.03x SLOWER than the FP model" in text and "356.0 ms against 175.0 ms" in text
    p["fp_reference"] = fast
    assert "1.75x faster than the FP model" in summary_text(p)
    # the FP graph itself has nothing to be compared with: one line, exit 2
    capsys.readouterr()
    assert main(["profile", "--backend", "onnxruntime", "--onnx", str(tiny_onnx), "--size", "40x30", "--iters", "1",
                 "--warmup", "0", "--fp-reference"]) == 2
    assert "FP already" in capsys.readouterr().err


def _profile_of(onnx_path):
    from compsrt.runtime.profile import profile

    return profile(TiledUpscaler(OrtBackend(onnx_path)), (40, 30), iters=1, warmup=0, progress=False)


# ---------------------------------------------------------------------------------- engine (build)
def _trt_or_skip():
    try:
        from compsrt.plugins.trt_compat import import_tensorrt

        return import_tensorrt()
    except ImportError:
        pytest.skip("neither tensorrt nor tensorrt_rtx is importable")


@pytest.fixture(scope="module")
def engine(tiny_onnx, tmp_path_factory):
    _trt_or_skip()
    from compsrt.runtime.engine import build_engine

    out = tmp_path_factory.mktemp("engine") / "tiny.plan"
    build_engine(tiny_onnx, out, plugins="python", timing_cache=out.with_name("timing.cache"), workspace_mb=256)
    return out


def test_build_writes_engine_sidecar_log_layers(engine, capsys):
    trt = _trt_or_skip()
    meta = json.loads(Path(str(engine) + ".json").read_text())
    assert meta["tensorrt"] == {"module": trt.__name__, "version": trt.__version__}
    assert meta["tile"] == [TILE, TILE] and meta["scale"] == 2 and meta["batch"] == 2
    assert meta["plugin"]["kind"] == "python" and len(meta["plugin"]["hash"]) == 64
    assert meta["strongly_typed"] is True and meta["sparse_weights"] is False
    assert meta["engine_bytes"] == engine.stat().st_size > 0
    assert "compute_capability" in meta["device"]
    assert Path(str(engine) + ".build.log").stat().st_size > 0
    layers = json.loads(Path(str(engine) + ".layers.json").read_text())
    assert "available" in layers
    if trt.__name__ == "tensorrt":
        assert engine.with_name("timing.cache").is_file()
    else:
        assert "ignored" in meta["timing_cache"]


def test_build_cli_and_missing_plugin_library(tiny_onnx, tmp_path, capsys):
    _trt_or_skip()
    out = tmp_path / "e.plan"
    assert main(["build", "--onnx", str(tiny_onnx), "--out", str(out), "--plugins", "none"]) == 0
    assert "bytes" in capsys.readouterr().out
    assert main(["build", "--onnx", str(tiny_onnx), "--out", str(out), "--plugins", str(tmp_path / "libnope.so")]) == 2
    err = capsys.readouterr().err
    assert "libnope.so does not exist" in err and "--plugins python" in err


def _has_cuda() -> bool:
    from compsrt.runtime.devmem import current_device_info

    return current_device_info() is not None


def test_engine_load_checks(engine, tmp_path, capsys):
    """Loading goes as far as this machine allows: sidecar checks always, deserialisation with a GPU."""
    from compsrt.runtime.backends.trt import load_engine as deserialize

    if _has_cuda():
        eng = deserialize(engine).engine
        assert eng is not None and eng.num_io_tensors == 2
    else:  # a CPU-only machine: TensorRT needs a CUDA driver to deserialise; a clear error, no crash
        with pytest.raises(CompsrtError, match="no usable CUDA device"):
            deserialize(engine)
    # mismatching TensorRT version
    bad = tmp_path / "bad.plan"
    shutil.copy(engine, bad)
    meta = json.loads(Path(str(engine) + ".json").read_text())
    meta["tensorrt"]["version"] = "0.0.1"
    Path(str(bad) + ".json").write_text(json.dumps(meta))
    with pytest.raises(CompsrtError, match="built with .* 0.0.1.*rebuild"):
        deserialize(bad)
    # changed plugin sources
    meta = json.loads(Path(str(engine) + ".json").read_text())
    meta["plugin"]["hash"] = "0" * 64
    Path(str(bad) + ".json").write_text(json.dumps(meta))
    with pytest.raises(CompsrtError, match="another version of the Python HadamardTransform plugin"):
        deserialize(bad)
    # truncated engine
    meta = json.loads(Path(str(engine) + ".json").read_text())
    Path(str(bad) + ".json").write_text(json.dumps(meta))
    bad.write_bytes(engine.read_bytes()[:1000])
    with pytest.raises(CompsrtError, match="truncated"):
        deserialize(bad)
    # no sidecar, and the CLI prints it on one line
    Path(str(bad) + ".json").unlink()
    assert main(["upscale", str(tmp_path / "x.png"), str(tmp_path / "y.png"), "--engine", str(bad)]) == 2
    capsys.readouterr()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["upscale", str(tmp_path / "x.png"), str(tmp_path / "y.png"), "--engine", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "compsrt build" in err and len(err.strip().splitlines()) == 1


def test_engine_from_another_gpu_refused(engine, tmp_path):
    """A full-TensorRT engine built for another compute capability is refused before deserialising."""
    from compsrt.runtime.backends.trt import check_compatible

    import types

    FakeTrt = types.ModuleType("tensorrt")
    FakeTrt.__version__ = "10.9.0"

    meta = json.loads(Path(str(engine) + ".json").read_text())
    meta["tensorrt"] = {"module": "tensorrt", "version": "10.9.0"}
    meta["device"] = {"name": "Orin", "compute_capability": "8.7"}
    with pytest.raises(CompsrtError, match=r"built for Orin \(compute capability 8.7\).*H200 \(9.0\).*rebuild"):
        check_compatible(meta, FakeTrt, {"name": "H200", "compute_capability": "9.0"}, engine)
    check_compatible(meta, FakeTrt, {"name": "Orin", "compute_capability": "8.7"}, engine)


def test_cli_lists_runtime_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("upscale", "build", "profile", "selftest", "pipeline"):
        assert cmd in out


def test_selftest_on_this_machine(capsys):
    """The device check runs everywhere: here it builds both engines and skips execution without a GPU."""
    _trt_or_skip()
    rc = main(["selftest", "--tile", "16"])
    out = capsys.readouterr().out
    assert "[PASS] ONNX Runtime" in out and "[PASS] engine build (small SwinIR)" in out
    assert "[PASS] engine build (HadamardTransform plugin)" in out
    if _has_cuda():
        assert "TensorRT vs ONNX Runtime" in out
    else:
        assert rc == 3 and "[SKIP] TensorRT vs ONNX Runtime" in out and "NOT verified" in out

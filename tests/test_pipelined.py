"""Pipelined folder upscaling, encoding options and 16-bit I/O (CPU, tiny images)."""

import argparse
import io
import sys

import numpy as np
import png
import pytest
from PIL import Image

from compsrt.cli import main
from compsrt.encoding import (EncodeOptions, add_encode_args, is_16bit, load_image_any, options_from_args, png_bytes,
                              save_image_any, to_8bit)
from compsrt.errors import CompsrtError
from compsrt.runtime.backends import Backend, torch_fp_backend
from compsrt.runtime.pipelined import PipelinedUpscaler
from compsrt.runtime.upscaler import TiledUpscaler


class Nearest(Backend):
    """x2 nearest-neighbour 'model': fast, exact, and lets a test inject failures."""

    name = "nearest"
    scale = 2

    def __init__(self, fail_on=None):
        self.calls = 0
        self.fail_on = fail_on

    def infer(self, x, timer):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt
        return x.repeat(2, axis=2).repeat(2, axis=3)


def _write_folder(folder, n, rng, size=(20, 28)):
    folder.mkdir()
    imgs = []
    for i in range(n):
        a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"im{i:02d}.png")
        imgs.append(a)
    return imgs


def test_pipelined_matches_sequential_in_order_and_skips_a_bad_file(tmp_path):
    rng = np.random.default_rng(0)
    imgs = _write_folder(tmp_path / "in", 7, rng)
    (tmp_path / "in" / "im03.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\ntruncated")
    up = TiledUpscaler(Nearest(), tile=16, overlap=4, batch=2)
    pairs = [(tmp_path / "in" / f"im{i:02d}.png", tmp_path / "out" / f"im{i:02d}.png") for i in range(7)]
    results = list(PipelinedUpscaler(up, host_workers=3, depth=3).run(pairs))
    assert [r.src for r in results] == [p[0] for p in pairs]  # input order
    assert [r.ok for r in results] == [True, True, True, False, True, True, True]
    assert "im03.png" in results[3].error and not (tmp_path / "out" / "im03.png").exists()
    for i in (0, 1, 2, 4, 5, 6):
        got = np.asarray(Image.open(tmp_path / "out" / f"im{i:02d}.png"))
        assert np.array_equal(got, up.upscale(imgs[i]).rgb)
        assert np.array_equal(got, imgs[i].repeat(2, 0).repeat(2, 1))


def test_pipelined_interrupt_leaves_no_partial_file(tmp_path):
    rng = np.random.default_rng(1)
    _write_folder(tmp_path / "in", 6, rng)
    up = TiledUpscaler(Nearest(fail_on=5), tile=16, overlap=4, batch=2)
    pairs = [(p, tmp_path / "out" / p.name) for p in sorted((tmp_path / "in").iterdir())]
    with pytest.raises(KeyboardInterrupt):
        list(PipelinedUpscaler(up, host_workers=2, depth=2).run(pairs))
    out = sorted((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert all(not p.name.startswith(".") for p in out), out  # no temporary leftovers
    assert len(out) < len(pairs)
    for p in out:  # whatever was written is complete
        assert Image.open(p).size == (56, 40)


def test_folder_cli_pipelined_with_torch(tmp_path, x2_weights):
    rng = np.random.default_rng(2)
    imgs = _write_folder(tmp_path / "in", 3, rng, size=(12, 10))
    (tmp_path / "in" / "bad.png").write_bytes(b"nope")
    rc = main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--scale", "2", "--weights", str(x2_weights),
               "--tile", "0", "--png-level", "9"])
    assert rc == 2  # one file failed, the others were written
    ref = TiledUpscaler(torch_fp_backend(2, x2_weights), tile=0)
    for i, a in enumerate(imgs):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"im{i:02d}.png")), ref.upscale(a).rgb)


def test_encode_options(tmp_path):
    rng = np.random.default_rng(3)
    a = (np.add.outer(np.arange(64), np.arange(96)) % 256).astype(np.uint8)[..., None].repeat(3, 2)
    a[::7] = rng.integers(0, 256, a[::7].shape, dtype=np.uint8)
    sizes = {}
    for lvl in (0, 1, 9):
        save_image_any(tmp_path / f"l{lvl}.png", a, options=EncodeOptions(png_level=lvl))
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"l{lvl}.png")), a)  # lossless at every level
        sizes[lvl] = (tmp_path / f"l{lvl}.png").stat().st_size
    assert sizes[0] > sizes[1] >= sizes[9]
    save_image_any(tmp_path / "q10.jpg", a, options=EncodeOptions(jpeg_quality=10))
    save_image_any(tmp_path / "q95.jpg", a, options=EncodeOptions(jpeg_quality=95))
    assert (tmp_path / "q10.jpg").stat().st_size < (tmp_path / "q95.jpg").stat().st_size
    save_image_any(tmp_path / "ll.webp", a, options=EncodeOptions(webp_lossless=True))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ll.webp").convert("RGB")), a)
    with pytest.raises(CompsrtError, match="png-level"):
        EncodeOptions(png_level=11)


@pytest.mark.parametrize("isal", [True, False])
def test_png_writer_is_lossless_and_valid(tmp_path, monkeypatch, isal):
    """compsrt's PNG writer: every level, grey/RGB/RGBA, edge shapes decode to the input (ISA-L and zlib)."""
    if isal:
        pytest.importorskip("isal")
    else:
        monkeypatch.setitem(sys.modules, "isal", None)  # the zlib fallback
    rng = np.random.default_rng(5)
    smooth = (np.add.outer(np.arange(40), np.arange(56)) * 3 % 256).astype(np.uint8)
    cases = [smooth[..., None].repeat(3, 2), rng.integers(0, 256, (9, 7, 4), dtype=np.uint8), smooth,
             rng.integers(0, 256, (1, 13, 3), dtype=np.uint8), rng.integers(0, 256, (11, 1, 3), dtype=np.uint8)]
    for a in cases:
        for level in (0, 1, 2, 3, 6, 9):
            img = Image.open(io.BytesIO(png_bytes(a, level)))
            img.load()  # checks the CRCs and the zlib stream
            assert np.array_equal(np.asarray(img), a), (a.shape, level)
    assert len(png_bytes(cases[0], 1)) < len(png_bytes(cases[0], 0))
    alpha = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    save_image_any(tmp_path / "a.png", cases[0], alpha)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.dstack([cases[0], alpha]))
    with pytest.raises(CompsrtError, match="8-bit"):
        png_bytes(smooth.astype(np.uint16))
    with pytest.raises(CompsrtError, match="channels"):
        png_bytes(cases[1][..., :2])


def test_pillow_png_writer_option(tmp_path):
    a = np.random.default_rng(6).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    save_image_any(tmp_path / "p.png", a, options=EncodeOptions(png_writer="pillow"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p.png")), a)
    with pytest.raises(CompsrtError, match="PNG writer"):
        EncodeOptions(png_writer="libpng")
    parser = argparse.ArgumentParser()
    add_encode_args(parser)
    assert options_from_args(parser.parse_args(["--png-writer", "pillow"])).png_writer == "pillow"
    assert options_from_args(parser.parse_args([])).png_writer == "compsrt"


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_round_trip_matches_8_bit_path(tmp_path, x2_weights, ext):
    """A 16-bit input gives a 16-bit output whose 8-bit reduction is the 8-bit result within one level."""
    rng = np.random.default_rng(4)
    a8 = rng.integers(0, 256, (14, 18, 3), dtype=np.uint8)
    a16 = a8.astype(np.uint16) * 257  # the same picture at 16 bits
    src16, src8 = tmp_path / f"deep{ext}", tmp_path / "flat.png"
    save_image_any(src16, a16)
    Image.fromarray(a8).save(src8)
    assert is_16bit(src16) and not is_16bit(src8)
    assert np.array_equal(load_image_any(src16).rgb, a16)
    for src, dst in ((src16, tmp_path / f"o16{ext}"), (src8, tmp_path / "o8.png")):
        assert main(["upscale", str(src), str(dst), "--scale", "2", "--weights", str(x2_weights), "--tile", "0"]) == 0
    out16 = load_image_any(tmp_path / f"o16{ext}").rgb
    out8 = np.asarray(Image.open(tmp_path / "o8.png"))
    assert out16.dtype == np.uint16 and out16.shape == (28, 36, 3)
    assert np.abs(to_8bit(out16).astype(int) - out8).max() <= 1
    assert len(np.unique(out16 % 257)) > 1  # real 16-bit precision, not an 8-bit image scaled up


def test_16_bit_grey_with_alpha_png(tmp_path, x2_weights):
    la = np.zeros((10, 12, 2), np.uint16)
    la[..., 0] = np.arange(120).reshape(10, 12) * 500
    la[..., 1] = 30000
    with open(tmp_path / "la.png", "wb") as f:
        png.Writer(12, 10, greyscale=True, alpha=True, bitdepth=16).write_array(f, la.reshape(-1))
    img = load_image_any(tmp_path / "la.png")
    assert img.rgb.dtype == np.uint16 and img.alpha is not None and img.alpha.max() == 30000
    assert main(["upscale", str(tmp_path / "la.png"), str(tmp_path / "o.png"), "--scale", "2",
                 "--weights", str(x2_weights), "--tile", "0"]) == 0
    out = png.Reader(filename=str(tmp_path / "o.png")).asDirect()
    assert out[3]["bitdepth"] == 16 and out[3]["alpha"] and (out[0], out[1]) == (24, 20)


def test_comparison_image_finds_the_worst_crop(tmp_path):
    from compsrt.runtime.comparison import comparison_image, worst_crop

    rng = np.random.default_rng(5)
    fp = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    comp = fp.copy()
    comp[40:50, 70:80] ^= 0x20  # the compressed model errs here
    assert worst_crop(fp, comp, 10) == (40, 70)
    info = comparison_image(tmp_path / "c.png", fp, fp, comp, amplify=4, crop=16)
    img = Image.open(tmp_path / "c.png")
    assert img.width == 4 * 96 + 12 and info["crop"]["size"] == 16 and info["crop"]["zoom"] == 6
    y, x = info["crop"]["y"], info["crop"]["x"]
    assert y <= 40 and y + 16 >= 50 and x <= 70 and x + 16 >= 80


def test_throughput_profile_reports_compute_pipelined_and_before():
    from compsrt.runtime.pipelined import throughput_profile, throughput_text

    up = TiledUpscaler(Nearest(), tile=16, overlap=4, batch=2)
    r = throughput_profile(up, (24, 16), images=4, warmup=1, host_workers=2)
    assert r["output"] == {"width": 48, "height": 32}
    assert r["sequential"]["png_level"] == 1 and r["sequential_before"]["png_level"] == 6
    for k in ("compute_only", "pipelined", "sequential", "sequential_before"):
        assert r[k]["images_per_s"] > 0
    assert r["pipelined"]["vs_compute_only"] == pytest.approx(r["pipelined"]["images_per_s"] / r["compute_only"]["images_per_s"])
    assert "compute only" in throughput_text(r) and "before" in throughput_text(r)


_SLOW_CLI = """
import sys, time
import compsrt.runtime.backends as backends
from compsrt.runtime.backends import Backend


class Slow(Backend):  # x2 nearest neighbour, 0.3 s per batch: Ctrl-C arrives while images are in flight
    name, scale = "slow", 2

    def infer(self, x, timer):
        time.sleep(0.3)
        return x.repeat(2, axis=2).repeat(2, axis=3)


backends.open_backend = lambda **kw: Slow()
from compsrt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_in_a_folder_upscale_lists_every_written_file_and_starts_no_more(tmp_path):
    """SIGINT to `compsrt upscale DIR OUT` (a subprocess, slowed backend): it exits 130, the console lists
    exactly the files on disk, fewer than all, no temporary file is left and nothing appears afterwards."""
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    rng = np.random.default_rng(4)
    _write_folder(tmp_path / "in", 30, rng, size=(8, 8))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CLI, "upscale", str(tmp_path / "in"), str(out),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())) and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    listed = {Path(ln.split(" -> ")[1].split(" (")[0]).name for ln in stdout.splitlines() if " -> " in ln}
    on_disk = {p.name for p in out.iterdir()}
    assert listed == on_disk and 0 < len(on_disk) < 30, (sorted(listed), sorted(on_disk), stderr)
    assert f"interrupted: {len(on_disk)} of 30 images written" in stderr, stderr
    time.sleep(1.0)
    assert {p.name for p in out.iterdir()} == on_disk


def test_cancel_abandons_the_batch_of_eager_torch_and_onnx_runtime(tiny_onnx):
    """What Ctrl-C calls on the device side: the next Swin block (torch) or ONNX Runtime's terminate flag stops
    the batch with Interrupted, which the pipeline reports as interrupted, not as a failed input."""
    from compsrt.runtime.backends import OrtBackend, TorchBackend
    from compsrt.runtime.backends.base import Interrupted
    from tests.conftest import tiny_swinir

    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    for backend in (TorchBackend(tiny_swinir()), OrtBackend(tiny_onnx)):
        backend.run(x)  # runs before
        backend.cancel()
        with pytest.raises(Interrupted):
            backend.run(x)

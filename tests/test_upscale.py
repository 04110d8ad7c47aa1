"""``compsrt upscale``: image modes, directories, one-line errors, and the model flags (one decision per file)."""

import numpy as np
import pytest
from PIL import Image

from compsrt.cli import main


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_upscale_modes(tmp_path, x2_weights, tiny_image, mode):
    src = tmp_path / f"in_{mode}.png"
    img = Image.fromarray(tiny_image, "RGB")
    if mode == "RGBA":
        img.putalpha(Image.fromarray(np.full(tiny_image.shape[:2], 128, np.uint8), "L"))
    else:
        img = img.convert(mode)
    img.save(src)
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), str(out), "--scale", "2", "--weights", str(x2_weights)]) == 0
    result = Image.open(out)
    assert result.size == (22, 26)
    assert result.mode == ("RGBA" if mode == "RGBA" else "RGB")


def test_upscale_refuses_16_bit(tmp_path, x2_weights, capsys):
    src = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(src)
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--scale", "2", "--weights", str(x2_weights)]) == 2
    err = capsys.readouterr().err
    assert "16-bit" in err and "8-bit" in err and len(err.strip().splitlines()) == 1


def test_upscale_refuses_corrupt_and_oversize(tmp_path, x2_weights, capsys, monkeypatch, tiny_image):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "o.png"
    assert main(["upscale", str(bad), str(out), "--scale", "2", "--weights", str(x2_weights)]) == 2
    assert "bad.png" in capsys.readouterr().err
    big = tmp_path / "big.png"
    Image.fromarray(tiny_image).save(big)
    monkeypatch.setenv("COMPSRT_MAX_PIXELS", "100")
    assert main(["upscale", str(big), str(out), "--scale", "2", "--weights", str(x2_weights)]) == 2
    assert "COMPSRT_MAX_PIXELS" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".o.png*"))


def _save(path, arr, mode=None):
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    img.save(path)
    return path


def test_upscale_cli_file_dir_and_errors(tmp_path, tiny_onnx, image, capsys):
    src = _save(tmp_path / "a.png", image)
    out = tmp_path / "a_x2.png"
    assert main(["upscale", str(src), str(out), "--onnx", str(tiny_onnx)]) == 0
    assert Image.open(out).size == (150, 116)
    # directory: two images (one RGBA, one greyscale JPEG) and one corrupt file
    d = tmp_path / "in"
    d.mkdir()
    rgba = np.dstack([image, np.full(image.shape[:2], 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "b.png")
    _save(d / "c.jpg", image, "L")
    (d / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    od = tmp_path / "out"
    assert main(["upscale", str(d), str(od), "--onnx", str(tiny_onnx), "--ext", ".png"]) == 2
    err = capsys.readouterr().err
    assert "zz.png" in err and "1 of 3 images failed" in err
    assert Image.open(od / "b.png").mode == "RGBA" and Image.open(od / "c.png").size == (150, 116)
    assert not list(od.glob(".*"))  # no partial files
    # one-line errors
    assert main(["upscale", str(d / "zz.png"), str(tmp_path / "o.png"), "--onnx", str(tiny_onnx)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--onnx", str(tiny_onnx), "--max-pixels", "100"]) == 2
    assert "COMPSRT_MAX_PIXELS" in capsys.readouterr().err
    assert main(["upscale", str(src), str(tmp_path / "o.gif"), "--onnx", str(tiny_onnx)]) == 2
    assert "extensions" in capsys.readouterr().err
    assert main(["upscale", str(src), str(tmp_path / "o.png"), "--onnx", str(tiny_onnx), "--checkpoint", "x"]) == 2
    assert "only one of" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()




def _compressed(tmp_path, name="q.pt"):
    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, freeze_model, quantize_model
    from tests.conftest import tiny_swinir

    student = quantize_model(tiny_swinir(2), QuantConfig(4, "deploy"))
    freeze_model(student)
    return save_checkpoint(student, {"scale": 2}, tmp_path / name)


def test_checkpoint_flag_takes_any_model_file_and_weights_flag_only_fp(tmp_path, x2_weights, tiny_image, capsys):
    """--checkpoint accepts FP weights, a compressed checkpoint or a pack (the content decides, not the name);
    --weights means FP weights everywhere and names the right flag for a compressed file."""
    from compsrt.calibration.checkpoint import pack_file

    src = tmp_path / "in.png"
    Image.fromarray(tiny_image).save(src)
    outs = {}
    for flag, path in (("--weights", x2_weights), ("--checkpoint", x2_weights)):
        outs[flag] = tmp_path / f"o{flag}.png"
        assert main(["upscale", str(src), str(outs[flag]), "--scale", "2", flag, str(path)]) == 0
    assert np.array_equal(np.asarray(Image.open(outs["--weights"])), np.asarray(Image.open(outs["--checkpoint"])))
    ckpt = _compressed(tmp_path, "compressed.pth")  # a misleading extension: the content decides
    packed = tmp_path / "packed.bin"
    pack_file(ckpt, packed)
    results = []
    for path in (ckpt, packed):
        out = tmp_path / f"o_{path.stem}.png"
        assert main(["upscale", str(src), str(out), "--checkpoint", str(path)]) == 0
        results.append(np.asarray(Image.open(out)))
    assert results[0].shape == (26, 22, 3) and np.array_equal(results[0], results[1])  # pack == checkpoint
    capsys.readouterr()
    assert main(["upscale", str(src), str(tmp_path / "w.png"), "--scale", "2", "--weights", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and len(err.strip().splitlines()) == 1

import json

import pytest

from compsrt.cli import main
from tests.conftest import tiny_swinir


def test_eval_bicubic_json_matches_reference(shared_data, capsys):
    assert main(["eval", "--bicubic", "--json", "--scale", "4", "--datasets", "Set5"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert {"dataset", "scale", "model", "psnr", "ssim", "n"} <= set(row)
    assert row["n"] == 5 and row["model"] == "bicubic"
    assert row["psnr"] == pytest.approx(28.4290, abs=0.01)  # independent implementation, shared MANIFEST.md
    assert row["ssim"] == pytest.approx(0.81113, abs=0.0005)


def test_eval_table_and_missing_dataset_error(shared_data, capsys):
    assert main(["eval", "--bicubic", "--scale", "3", "--datasets", "Set5"]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "Set5" in out
    assert main(["eval", "--bicubic", "--scale", "3", "--datasets", "Nope"]) == 2
    assert "benchmark Nope x3 not found" in capsys.readouterr().err


def test_eval_stand_in_weights_match_manifest(shared_data, capsys):
    if not (shared_data / "weights" / "swinir_light_x4.pth").is_file():
        pytest.skip("stand-in weights not present")
    assert main(["eval", "--json", "--scale", "4", "--datasets", "Set5"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["psnr"] == pytest.approx(30.8534, abs=0.01) and row["ssim"] == pytest.approx(0.87112, abs=0.0005)


def test_console_script_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "upscale" in capsys.readouterr().out


def test_eval_quant_checkpoint_scores_like_its_torch_model(shared_data, tmp_path, capsys):
    """`eval --quant` runs the compressed model itself: its score equals scoring that model directly."""
    from compsrt.calibration.checkpoint import load_compressed_model, save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, freeze_model, quantize_model
    from compsrt.evaluation.benchmark import evaluate_dataset
    from compsrt.runtime.backends import TorchBackend
    from compsrt.runtime.upscaler import TiledUpscaler

    fp = tiny_swinir(4, 0)
    student = quantize_model(fp, QuantConfig(4, "deploy"))
    freeze_model(student)
    ckpt = save_checkpoint(student, {"scale": 4}, tmp_path / "q.pt")
    assert main(["eval", "--quant", str(ckpt), "--scale", "4", "--datasets", "Set5", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    model, _ = load_compressed_model(ckpt)
    whole = TiledUpscaler(TorchBackend(model), tile=0).upscale_array
    ref = evaluate_dataset(shared_data / "benchmarks", "Set5", 4, whole, "ref", False)
    assert row["psnr"] == pytest.approx(ref.psnr, abs=1e-9) and "deploy_w4a4" in row["model"]
    assert main(["eval", "--quant", str(ckpt), "--scale", "2", "--datasets", "Set5"]) == 2
    assert "pass --scale 4" in capsys.readouterr().err

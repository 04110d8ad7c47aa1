"""The shared contracts for files: what a model file is (decided once, from its content), and the sidecars."""

import json

import numpy as np
import pytest
import torch

from compsrt import artifacts
from compsrt.errors import CompsrtError
from compsrt.runtime.compare import compare
from tests.conftest import official_format_state


def test_model_file_kind_comes_from_the_content(tmp_path):
    from compsrt.calibration.checkpoint import load_model, pack_file, save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, freeze_model, quantize_model
    from tests.conftest import tiny_swinir

    fp = tmp_path / "weights.pt"  # FP weights under a checkpoint-like name
    torch.save(official_format_state(2), fp)
    student = quantize_model(tiny_swinir(2), QuantConfig(3, "deploy"))
    freeze_model(student)
    ckpt = save_checkpoint(student, {"scale": 2}, tmp_path / "model.pth")  # compressed under a weights-like name
    packed = tmp_path / "model.pt"
    pack_file(ckpt, packed)
    kinds = {p.name: artifacts.read_model_file(p).kind for p in (fp, ckpt, packed)}
    assert kinds == {"weights.pt": artifacts.FP, "model.pth": artifacts.COMPRESSED, "model.pt": artifacts.PACKED}
    for path, kind in ((fp, "fp"), (ckpt, "compressed"), (packed, "packed")):
        model, meta = load_model(path)
        assert meta["kind"] == kind and meta["scale"] == 2 and not model.training
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(ckpt)[0](x), load_model(packed)[0](x))


def test_model_file_errors_name_the_problem(tmp_path):
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CompsrtError, match="cannot read checkpoint"):
        artifacts.read_model_file(garbage, "checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"meta": {"format": "someone-else/2"}, "tensors": {}}, other)
    with pytest.raises(CompsrtError, match="not a compsrt compressed checkpoint.*someone-else/2"):
        artifacts.read_model_file(other)
    lists = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], lists)
    with pytest.raises(CompsrtError, match="neither a state dict"):
        artifacts.read_model_file(lists)
    with pytest.raises(CompsrtError, match="does not exist"):
        artifacts.read_model_file(tmp_path / "nope.pt")
    from compsrt.calibration.checkpoint import read_checkpoint

    fp = tmp_path / "fp.pth"
    torch.save(official_format_state(2), fp)
    with pytest.raises(CompsrtError, match="FP SwinIR-light weights, not a compsrt compressed checkpoint"):
        read_checkpoint(fp)


def test_one_sidecar_rule_reader_and_writer(tmp_path):
    onnx, plan = tmp_path / "m.onnx", tmp_path / "m.plan"
    assert artifacts.sidecar_path(onnx).name == "m.onnx.json" and artifacts.sidecar_path(plan).name == "m.plan.json"
    with pytest.raises(ValueError):
        artifacts.write_sidecar(onnx, {"tile": [8, 8]})  # a sidecar names its format
    written = artifacts.write_sidecar(onnx, {"format": artifacts.ONNX_FORMAT, "tile": [16, 8]})
    assert written == tmp_path / "m.onnx.json" and not list(tmp_path.glob(".*"))
    meta = artifacts.read_sidecar(onnx, artifacts.ONNX_FORMAT)
    assert artifacts.sidecar_tile(meta) == (16, 8) and artifacts.sidecar_tile({"tile": 24}) == (24, 24)
    assert artifacts.read_sidecar(plan) == {}  # optional where the artifact carries its own shapes
    with pytest.raises(CompsrtError, match="m.plan.json is missing; rebuild"):
        artifacts.read_sidecar(plan, artifacts.ENGINE_FORMAT, required=True, fix="rebuild")
    with pytest.raises(CompsrtError, match="expected compsrt-engine/1; rebuild"):
        artifacts.read_sidecar(onnx, artifacts.ENGINE_FORMAT, fix="rebuild")
    artifacts.sidecar_path(plan).write_text("{broken")
    with pytest.raises(CompsrtError, match="unreadable"):
        artifacts.read_sidecar(plan)


def test_export_and_engine_sidecars_follow_the_rule(tmp_path):
    """The export writes <model>.onnx.json, which the ONNX Runtime backend reads back (format, tile, scale)."""
    from compsrt.export.exporter import ExportOptions, export_model
    from compsrt.runtime.backends import OrtBackend
    from tests.conftest import tiny_swinir

    res = export_model(tiny_swinir(2), tmp_path / "m.onnx", ExportOptions(tile=(16, 16), batch=None))
    assert res.sidecar_path == artifacts.sidecar_path(res.onnx_path)
    side = json.loads(res.sidecar_path.read_text())
    assert side["format"] == artifacts.ONNX_FORMAT and side["input"]["name"] == artifacts.INPUT_NAME
    with OrtBackend(res.onnx_path) as b:
        assert b.meta == side and b.tile == (16, 16) and b.scale == 2 and b.input_name == artifacts.INPUT_NAME


def test_compare_is_one_comparator_for_floats_and_images():
    a = np.zeros((2, 3, 4, 4), np.float32)
    b = a.copy()
    b[0, 0, 0, 0], b[1, 2, 3, 3] = 0.5, 2.0  # the second is outside [0, 1]
    c = compare(a, b, tol=0.1)
    assert c["max_abs"] == 1.0 and c["n_off"] == 2 and c["n"] == a.size and c["frac_off"] == 2 / a.size
    assert compare(a, b, clip=False)["max_abs"] == 2.0
    u = np.zeros((4, 4, 3), np.uint8)
    v = u.copy()
    v[0, 0, 0] = 255
    from compsrt.evaluation.metrics import psnr

    assert compare(u, v)["psnr_db"] == pytest.approx(psnr(u, v), abs=1e-9) and compare(u, u)["psnr_db"] == float("inf")
    with pytest.raises(ValueError):
        compare(u, a)

"""Independent weight / activation bit-widths, per-site overrides and the named presets (CPU, tiny models).

Per-site bits must survive calibrate -> checkpoint -> pack -> export -> sidecar -> inspect, the exported Q/DQ
ranges must be the per-site ones, and the mixed graphs must pass the same export checks as W = A ones
(forced site check, ONNX Runtime vs the simulation, TensorRT-RTX parse and build).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
import torch

from compsrt.artifacts import read_sidecar
from compsrt.calibration.checkpoint import load_model, pack_file, save_checkpoint
from compsrt.calibration.config import PRESETS, QuantConfig, parse_site_bits
from compsrt.calibration.distill import calibrate
from compsrt.calibration.qmodel import quantize_model, site_bits
from compsrt.errors import CompsrtError
from compsrt.export.exporter import ExportOptions, build_onnx, export_checkpoint
from compsrt.export.inspect import inspect_model
from tests.conftest import tiny_swinir
from tests.test_calibration import tiny_fp, tiny_sampler, tiny_settings
from tests.test_export import TILE, _ort, _quantized

# W4A8 plus: 8-bit weights in every fc2 (INT8 storage beside INT4), 4-bit probabilities, one 3-bit site
MIXED = QuantConfig.from_preset("W4A8", overrides=(("mlp.fc2", "w", 8), ("attn.quant_attn", "a", 4),
                                                   ("blocks.1.attn.qkv.k", "wa", 3)))
BLOCK1 = "layers.0.residual_group.blocks.1"


@pytest.fixture(scope="module")
def mixed():
    m = _quantized(MIXED)
    return m, build_onnx(m, ExportOptions(tile=TILE, batch=None, hadamard="matmul"))


def test_site_bits_resolve_from_defaults_presets_and_overrides():
    bits = site_bits(quantize_model(tiny_swinir(2), MIXED, init_weights=False))
    assert bits[f"{BLOCK1}.mlp.fc2"] == {"w": 8, "a": 8} and bits[f"{BLOCK1}.mlp.fc1"] == {"w": 4, "a": 8}
    assert bits[f"{BLOCK1}.attn.quant_attn"] == {"a": 4} and bits[f"{BLOCK1}.attn.qkv.k"] == {"w": 3, "a": 3}
    assert bits["layers.0.residual_group.blocks.0.attn.qkv.k"] == {"w": 4, "a": 8}
    assert MIXED.label == "W4A8+3" and QuantConfig(4).label == "W4A4" and QuantConfig(4).tag == "deploy_w4a4"
    for name, (w, a, own, _) in PRESETS.items():
        cfg = QuantConfig.from_preset(name)
        assert (cfg.wbits, cfg.abits, cfg.label) == (w, a, name)
        quantize_model(tiny_swinir(2), cfg, init_weights=False)  # every preset pattern matches a site
    mix = site_bits(quantize_model(tiny_swinir(2), QuantConfig.from_preset("W2A8-attn4"), init_weights=False))
    assert {v["w"] for k, v in mix.items() if ".mlp." in k} == {2}
    assert {v["w"] for k, v in mix.items() if ".attn.qkv." in k or k.endswith("attn.proj")} == {4}


def test_site_bits_spec_and_errors(tmp_path):
    assert parse_site_bits("attn.quant_attn=8, mlp.fc2:a=8,mlp.fc1:w=2") == (
        ("attn.quant_attn", "wa", 8), ("mlp.fc2", "a", 8), ("mlp.fc1", "w", 2))
    spec = tmp_path / "bits.json"
    spec.write_text(json.dumps({"mlp.fc2:a": 8, "layers.0.*:w": 3}))
    assert parse_site_bits(str(spec)) == (("mlp.fc2", "a", 8), ("layers.0.*", "w", 3))
    for bad in ("mlp.fc2", "mlp.fc2=x", "mlp.fc2=5"):
        with pytest.raises(CompsrtError, match="site-bits"):
            QuantConfig(4, overrides=parse_site_bits(bad))
    with pytest.raises(CompsrtError, match="matches no quantized site"):
        quantize_model(tiny_swinir(2), QuantConfig(4, overrides=(("mlp.fc3", "w", 8),)), init_weights=False)
    with pytest.raises(CompsrtError, match="paper mode"):
        QuantConfig(4, "paper", wbits=4, abits=8)
    with pytest.raises(CompsrtError, match="paper mode"):
        QuantConfig(4, "paper", overrides=(("mlp.fc2", "a", 4),))
    with pytest.raises(CompsrtError, match="in paper mode"):
        QuantConfig(8, "paper")
    with pytest.raises(CompsrtError, match="deploy-mode preset"):
        QuantConfig.from_preset("W4A8", mode="paper")
    from compsrt.cli import calibration as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    base = ["calibrate", "--scale", "2", "--out", str(tmp_path / "x.pt")]
    with pytest.raises(CompsrtError, match="drop --bits"):
        cli.quant_config(parser.parse_args(base + ["--preset", "W4A8", "--bits", "4"]))
    with pytest.raises(CompsrtError, match="give the bit-widths"):
        cli.quant_config(parser.parse_args(base + ["--wbits", "4"]))
    assert cli.quant_config(parser.parse_args(base + ["--wbits", "4", "--abits", "8"])) == QuantConfig(4, wbits=4, abits=8)
    got = cli.quant_config(parser.parse_args(base + ["--preset", "W2A8-attn4", "--site-bits", "attn.proj:w=8"]))
    assert got.overrides[-1] == ("attn.proj", "w", 8) and got.label == "W2A8-attn4+1"


def test_per_site_bits_survive_checkpoint_pack_export_sidecar_inspect(tmp_path, capsys):
    student, log = calibrate(tiny_fp(), MIXED, tiny_sampler(), tiny_settings(2), progress=False)
    expected = site_bits(student)
    ckpt = save_checkpoint(student, {"scale": 2, "log": log}, tmp_path / "m.pt")
    pack_file(ckpt, tmp_path / "m.csrt")
    for f in (ckpt, tmp_path / "m.csrt"):
        model, meta = load_model(f)
        assert site_bits(model) == meta["site_bits"] == expected and meta["precision"] == "W4A8+3"
        assert (meta["wbits"], meta["abits"]) == (4, 8)
    res = export_checkpoint(tmp_path / "m.csrt", tmp_path / "m.onnx", ExportOptions(tile=TILE, hadamard="plugin"))
    side = read_sidecar(tmp_path / "m.onnx")
    assert side["site_bits"] == expected and side["precision_label"] == "W4A8+3" and (side["wbits"], side["abits"]) == (4, 8)
    assert side["precision"]["weight_storage"] == {"int4": 10, "int8": 2} and side["opset"] == 21
    from compsrt.cli import main

    assert main(["inspect", str(res.onnx_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    q = r["quant_bits"]
    assert r["site_bits"] == expected and q["matches"] and q["sites"] == 20
    assert q["activation_bits"] == {"3": 1, "4": 2, "8": 17} and q["weight_storage"] == {"int4": 10, "int8": 2}
    assert q["weight_bits"] == {"3": 1, "4": 9, "8": 2}
    assert main(["inspect", str(res.onnx_path)]) == 0
    assert "graph matches the sidecar's per-site bits: True" in capsys.readouterr().out


def test_old_checkpoints_without_per_site_bits_load(tmp_path):
    """A checkpoint written before wbits / abits / overrides existed is W = A = bits; stored per-site bits that
    contradict the config are refused."""
    ckpt = save_checkpoint(_quantized(QuantConfig(3)), {"scale": 2}, tmp_path / "new.pt")
    obj = torch.load(ckpt, weights_only=True)
    obj["meta"].pop("site_bits")
    obj["meta"]["quant"] = {k: obj["meta"]["quant"][k] for k in ("bits", "mode", "prune", "clamp_codes")}
    torch.save(obj, tmp_path / "old.pt")
    model, meta = load_model(tmp_path / "old.pt")
    assert set(map(json.dumps, site_bits(model).values())) == {'{"w": 3, "a": 3}', '{"a": 3}'}
    assert meta["precision"] == "W3A3" and meta["bits"] == 3
    obj["meta"]["site_bits"] = {f"{BLOCK1}.mlp.fc2": {"w": 8, "a": 3}}
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CompsrtError, match="per-site bits disagree"):
        load_model(tmp_path / "bad.pt")


def test_exported_qdq_ranges_are_the_per_site_bits(mixed):
    """Activation Clip ranges and weight codes in the graph are those of each site's own bits; a Clip widened by
    one code is found at its site."""
    model, (proto, side) = mixed
    q = inspect_model(proto)["quant_bits"]
    assert q["matches"], q["mismatched_sites"]
    for name, b in side["site_bits"].items():
        assert q["per_site"][name]["a"] == b["a"], name
        if "w" in b:
            w = q["per_site"][name]["w"]
            assert w["dtype"] == ("int4" if b["w"] <= 4 else "int8") and -(1 << (b["w"] - 1)) <= w["min"] <= w["max"] < 1 << (b["w"] - 1)
    assert q["per_site"][f"{BLOCK1}.mlp.fc2"]["w"]["max"] > 7  # 8-bit codes use more than the 4-bit range
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    init = {i.name: i for i in bad.graph.initializer}
    site = f"{BLOCK1}.attn.quant_attn"
    clip = next(n for n in bad.graph.node if n.name == f"{site}/clip")
    qnode = next(n for n in bad.graph.node if n.name == f"{site}/quantize")
    scale = onnx.numpy_helper.to_array(init[qnode.input[1]])
    for i, step in ((1, -8), (2, 8)):  # [-8, 7] -> [-16, 15]: 5 bits where the sidecar says 4
        t = init[clip.input[i]]
        t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) + step * scale, t.name))
    qb = inspect_model(bad)["quant_bits"]
    assert not qb["matches"] and site in qb["mismatched_sites"] and qb["per_site"][site]["a"] == 5


def test_mixed_graph_forced_site_check_and_onnxruntime_match_the_simulation(mixed):
    from compsrt.runtime.parity import site_parity

    model, (proto, _) = mixed
    onnx.checker.check_model(proto, full_check=True)
    x = torch.rand(2, 3, *TILE, generator=torch.Generator().manual_seed(7))
    r = site_parity(model, proto, x.numpy(), threads=2)
    assert r["sites"] == 20 and r["forced"]["off_boundary"] == 0, r["forced"]
    assert r["forced"]["out_max_abs"] < 1e-5 and r["forced"]["max_prequant_abs"] < 1e-4
    y = _ort(proto).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        d = np.abs(y - model(x).numpy())
    assert (d > 1e-3).mean() <= 1e-3 and d.max() < 0.05, (d.max(), (d > 1e-3).mean())


@pytest.mark.parametrize("preset", [*PRESETS, "mixed"])
def test_trt_rtx_builds_presets(preset, mixed, tmp_path):
    """TensorRT-RTX (CPU) parses and builds every preset: INT4 weights (opset 21) for <= 4 bits, INT8 weights
    (opset 17) for W8A8, and the mixed graph (INT4 and INT8 weights side by side, 3- to 8-bit activations)."""
    pytest.importorskip("tensorrt_rtx")
    from compsrt.runtime.engine import parse_and_build

    if preset == "mixed":
        proto, side = mixed[1]
    else:
        proto, side = build_onnx(_quantized(QuantConfig.from_preset(preset)), ExportOptions(tile=TILE, batch=None, hadamard="matmul"))
    assert side["opset"] == (17 if preset == "W8A8" else 21)
    path = tmp_path / "q.onnx"
    onnx.save(proto, str(path))
    r = parse_and_build(path, max_batch=2)
    assert r.parsed and r.built, (r.parse_errors, r.build_errors)
    assert r.quantize_layers == 20 and r.engine_bytes > 0

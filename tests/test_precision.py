"""Internal precision (--internal-precision): the graph's declared dtypes, the torch reference, the FP16 overflow
guard with activation ranges, and TensorRT-RTX strongly typed builds of every internal precision."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from compsrt.calibration.ranges import record_ranges
from compsrt.errors import CompsrtError
from compsrt.export.exporter import ExportOptions, build_onnx
from compsrt.export.precision import GUARD_MARGIN, check_fp16_guard, reference_forward
from compsrt.models.precision import FP16_MAX, KEEP_FP32, OP_KINDS, InternalPrecision
from tests.conftest import tiny_swinir
from tests.test_export import _ort, _quantized

TILE = (16, 16)
T = onnx.TensorProto


def _ranges(model, seed=0):
    return record_ranges(model, [torch.rand(2, 3, *TILE, generator=torch.Generator().manual_seed(seed))])


def _dtypes(proto: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(proto)
    out = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    out.update({i.name: i.data_type for i in proto.graph.initializer})
    out.update({i.name: i.type.tensor_type.elem_type for i in proto.graph.input})
    return out


def _op_input_types(proto: onnx.ModelProto, op: str) -> set[int]:
    dt = _dtypes(proto)
    return {dt[n.input[0]] for n in proto.graph.node if n.op_type == op and n.input[0] in dt}


def _overflowing_model():
    """The tiny model with its first conv scaled until activations pass FP16's range (and the guard's margin)."""
    m = tiny_swinir(2, 0, noise=0.02)
    with torch.no_grad():
        m.conv_first.weight.mul_(1e6)
        m.conv_first.bias.mul_(1e6)
    return m


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_graph_declares_each_kind_in_its_dtype(name):
    m = tiny_swinir(2, 0, noise=0.02)
    proto, side = build_onnx(m, ExportOptions(tile=TILE, internal=name), {"activation_ranges": _ranges(m)})
    low = T.BFLOAT16 if name == "bf16" else T.FLOAT16
    policy = InternalPrecision.of(name)
    want = {"Conv": "conv", "LayerNormalization": "layernorm", "Softmax": "softmax", "Erf": "gelu"}
    for op, kind in want.items():
        assert _op_input_types(proto, op) == {low if kind in policy.low else T.FLOAT}, op
    assert side["precision"]["internal"] == name
    assert side["precision"]["internal_fp32_kinds"] == sorted(KEEP_FP32[name], key=OP_KINDS.index)
    assert sum(n.op_type == "Cast" for n in proto.graph.node) > 0
    if name == "fp16":
        assert side["precision"]["fp16_guard"]["max_abs"] < FP16_MAX / GUARD_MARGIN


def test_fp16_graph_runs_in_onnxruntime_like_the_torch_reference():
    m = tiny_swinir(2, 0, noise=0.02)
    proto, _ = build_onnx(m, ExportOptions(tile=TILE, internal="fp16"), {"activation_ranges": _ranges(m)})
    x = torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(3))
    y = _ort(proto).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref16 = reference_forward(m, x, InternalPrecision.of("fp16")).numpy()
        ref32 = m(x).numpy()
    assert np.abs(y - ref16).max() < 5e-3 and np.abs(ref16 - ref32).max() < 5e-3
    assert np.abs(ref16 - ref32).max() > 0  # the reference really computed in FP16


def test_onnxruntime_backend_refuses_a_bf16_graph_in_one_line_naming_the_way_out():
    """ONNX Runtime's CPU provider has no BF16 kernels: compsrt's backend says so and names the fixes."""
    from compsrt.runtime.backends.onnxrt import session_from_onnx

    m = tiny_swinir(2, 0, noise=0.02)
    proto, _ = build_onnx(m, ExportOptions(tile=TILE, internal="bf16"), {})
    with pytest.raises(CompsrtError) as err:
        session_from_onnx(proto.SerializeToString())
    msg = str(err.value)
    assert "\n" not in msg and "no BF16 kernels" in msg and "--engine" in msg and "--internal-precision" in msg


def test_fp32_internal_graph_has_no_casts():
    proto, side = build_onnx(tiny_swinir(2, 0), ExportOptions(tile=TILE))
    assert not any(n.op_type == "Cast" for n in proto.graph.node)
    assert side["precision"]["internal"] == "fp32" and side["precision"]["fp16_guard"] is None


def test_compressed_graph_keeps_qdq_fp32_and_reduces_the_rest():
    q = _quantized(4)
    proto, _ = build_onnx(q, ExportOptions(tile=TILE, hadamard="matmul", internal="fp16"),
                          {"activation_ranges": _ranges(q)})
    assert _op_input_types(proto, "QuantizeLinear") == {T.FLOAT}
    assert _op_input_types(proto, "Softmax") == {T.FLOAT16} and _op_input_types(proto, "Conv") == {T.FLOAT16}
    x = torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(4))
    y = _ort(proto).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = reference_forward(q, x, InternalPrecision.of("fp16")).numpy()
    assert np.abs(y - ref).max() < 2e-2


def test_ranges_record_kinds_and_groups():
    m = tiny_swinir(2, 0, noise=0.02)
    r = _ranges(m)
    t = r["tensors"]
    assert set(t["layers.0.residual_group.blocks.1.norm1:in"]["kinds"]) == {"layernorm", "residual"}
    assert "attention" in t["layers.0.residual_group.blocks.0.attn.softmax:out"]["kinds"]
    assert set(r["groups"]) == {"head", "group 0", "tail"} and r["patches"] == 2
    peak = max(v["max_abs"] for v in t.values())
    assert max(g["max_abs"] for g in r["groups"].values()) == peak > 0


def test_guard_refuses_fp16_on_overflow_and_bf16_still_runs():
    m = _overflowing_model()
    r = _ranges(m)
    with pytest.raises(CompsrtError, match=r"fp16 refused: tensor \S+ reaches .*use --internal-precision bf16"):
        build_onnx(m, ExportOptions(tile=TILE, internal="fp16"), {"activation_ranges": r})
    x = torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y16 = reference_forward(m, x, InternalPrecision.of("fp16", set(OP_KINDS)))
        y_bf = reference_forward(m, x, InternalPrecision.of("bf16"))
    assert not torch.isfinite(y16).all()  # the refusal is real: FP16 overflows on this model
    assert torch.isfinite(y_bf).all()
    proto, side = build_onnx(m, ExportOptions(tile=TILE, internal="bf16"))
    assert side["precision"]["internal"] == "bf16" and proto.graph.node


def test_guard_needs_ranges_for_fp16():
    with pytest.raises(CompsrtError, match="needs activation ranges"):
        check_fp16_guard(None, InternalPrecision.of("fp16"), "checkpoint")
    assert check_fp16_guard(None, InternalPrecision.of("bf16"), "checkpoint") is None


def test_cli_fp16_refusal_is_one_line_exit_2_and_writes_nothing(tmp_path):
    from compsrt.calibration.checkpoint import load_model
    from compsrt.files import sha256_file
    from tests.conftest import official_format_state

    state = official_format_state(2)
    for key in ("conv_first.weight", "conv_first.bias"):
        state["params"][key] = state["params"][key] * 1e6
    weights = tmp_path / "big.pth"
    torch.save(state, weights)
    m, _ = load_model(weights)
    r = dict(_ranges(m), weights_sha256=sha256_file(weights))
    rpath = tmp_path / "ranges.json"
    rpath.write_text(json.dumps(r))
    out = tmp_path / "m.onnx"
    base = [sys.executable, "-m", "compsrt", "export", "--checkpoint", str(weights), "--tile", "16",
            "--hadamard", "matmul", "--out", str(out), "--ranges", str(rpath)]
    p = subprocess.run(base + ["--internal-precision", "fp16"], capture_output=True, text=True, check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    peak = max(r["tensors"], key=lambda k: r["tensors"][k]["max_abs"])
    assert len(lines) == 1 and "bf16" in lines[0] and f"tensor {peak} " in lines[0] and "Traceback" not in p.stderr
    assert set(tmp_path.iterdir()) == {weights, rpath}
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(r, weights_sha256="0" * 64)))
    p = subprocess.run(base[:-1] + [str(other), "--internal-precision", "fp16"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "another model file" in p.stderr and not out.exists()


# -- TensorRT-RTX (CPU build, strongly typed) ----------------------------------------------------------
@pytest.mark.parametrize("checkpoint", ["fp", "w4a4"])
@pytest.mark.parametrize("internal", ["fp32", "bf16", "fp16"])
def test_trt_rtx_builds_every_internal_precision(internal, checkpoint, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from compsrt.runtime.engine import parse_and_build

    m = tiny_swinir(2, 0, noise=0.02) if checkpoint == "fp" else _quantized(4)
    proto, _ = build_onnx(m, ExportOptions(tile=TILE, hadamard="matmul", internal=internal),
                          {"activation_ranges": _ranges(m)})
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    r = parse_and_build(path, max_batch=1)
    assert r.parsed and r.built and r.engine_bytes > 0, (r.parse_errors, r.build_errors)

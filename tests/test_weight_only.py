"""Weight-only graphs: ``compsrt export --activations fp`` and the diagnostic benchmarks/export/weight_only.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from benchmarks.export.weight_only import strip_activation_qdq
from compsrt.calibration.config import QuantConfig
from compsrt.export.exporter import ExportOptions, build_onnx
from tests.test_export import TILE, _ort, _quantized


def _ops(model: onnx.ModelProto, op: str) -> list:
    return [n for n in model.graph.node if n.op_type == op]


def test_weight_only_keeps_weights_and_shifts_and_drops_activation_qdq(tmp_path):
    proto, _ = build_onnx(_quantized(QuantConfig.from_preset("W4A8")), ExportOptions(tile=TILE, batch=None, hadamard="matmul"))
    src = tmp_path / "w4a8.onnx"
    onnx.save(proto, str(src))
    n_q, n_dq = len(_ops(proto, "QuantizeLinear")), len(_ops(proto, "DequantizeLinear"))
    assert strip_activation_qdq(src, tmp_path / "wo.onnx") == n_q > 0
    wo = onnx.load(str(tmp_path / "wo.onnx"))
    assert not _ops(wo, "QuantizeLinear") and len(_ops(wo, "DequantizeLinear")) == n_dq - n_q  # the weights' stay
    shifts = [n for n in _ops(proto, "Sub") if n.name.endswith("/sub_shift")]
    assert shifts and len([n for n in _ops(wo, "Sub") if n.name.endswith("/sub_shift")]) == len(shifts)
    x = np.random.default_rng(0).random((1, 3, *TILE), dtype=np.float32)
    y_q, y_wo = (_ort(m).run(None, {m.graph.input[0].name: x})[0] for m in (proto, wo))
    err = float(np.abs(y_wo - y_q).mean())  # FP activations: off the A8 graph by its activation rounding, no more
    assert 0 < err < 0.005 * float(np.abs(y_q).mean())


def _fp_activation_reference(model, x):
    """The checkpoint's model with every activation quantizer bypassed (its weights still quantized)."""
    import torch

    from benchmarks.export.conformance import fp_activations

    with torch.no_grad(), fp_activations(model):
        return model(torch.from_numpy(x)).numpy()


def test_export_with_fp_activations_is_the_weight_only_model(tmp_path):
    """`compsrt export --activations fp`: no activation Q/DQ, no shift; ONNX Runtime computes the checkpoint with its
    activation quantizers bypassed; the sidecar says so and inspect agrees; fused-quant is refused."""
    from compsrt.errors import CompsrtError
    from compsrt.export.inspect import inspect_model

    model = _quantized(QuantConfig.from_preset("W4A8"))
    opts = ExportOptions(tile=TILE, batch=None, hadamard="matmul", activations="fp")
    proto, side = build_onnx(model, opts)
    assert not _ops(proto, "QuantizeLinear") and not [n for n in _ops(proto, "Sub") if n.name.endswith("/sub_shift")]
    n_linear = sum(v.get("w") is not None for v in side["site_bits"].values())
    assert len(_ops(proto, "DequantizeLinear")) == n_linear > 0  # the weights only
    assert side["activations"] == "fp" and side["abits"] is None and side["precision_label"] == "W4A8, FP activations"
    x = np.random.default_rng(0).random((2, 3, *TILE), dtype=np.float32)
    y = _ort(proto).run(None, {proto.graph.input[0].name: x})[0]
    ref = _fp_activation_reference(model, x)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-5)
    quantized, _ = build_onnx(model, ExportOptions(tile=TILE, batch=None, hadamard="matmul"))
    y_q = _ort(quantized).run(None, {quantized.graph.input[0].name: x})[0]
    assert float(np.abs(y_q - ref).max()) > 1e-4  # the quantized graph is not the reference: the test can tell
    path = tmp_path / "wo.onnx"
    onnx.save(proto, str(path))
    (tmp_path / "wo.onnx.json").write_text(__import__("json").dumps(side))
    qb = inspect_model(path)["quant_bits"]
    assert qb["matches"] and qb["activation_bits"] == {}
    with pytest.raises(CompsrtError, match="fused-quant"):
        build_onnx(model, ExportOptions(tile=TILE, batch=None, hadamard="fused-quant", activations="fp"))


def test_trt_rtx_builds_the_fp_activation_graph(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from compsrt.runtime.engine import parse_and_build

    proto, _ = build_onnx(_quantized(QuantConfig.from_preset("W4A8")), ExportOptions(tile=TILE, batch=None,
                                                                                     hadamard="matmul", activations="fp"))
    path = tmp_path / "wo.onnx"
    onnx.save(proto, str(path))
    r = parse_and_build(path, max_batch=2)
    assert r.parsed and r.built, (r.parse_errors, r.build_errors)

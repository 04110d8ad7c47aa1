"""benchmarks/export/weight_only.py: a compsrt graph without its activation Q/DQ (the engine-size diagnostic)."""

from __future__ import annotations

import numpy as np
import onnx

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
    assert strip_activation_qdq(src, tmp_path / "ns.onnx", drop_shifts=True) == n_q
    assert not [n for n in onnx.load(str(tmp_path / "ns.onnx")).graph.node if n.name.endswith("/sub_shift")]

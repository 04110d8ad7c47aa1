"""The ONNX Runtime optimizer failure of opset-21 Q/DQ graphs, reduced to four nodes.

    x -> QuantizeLinear(s, zp=int8 0) -> DequantizeLinear(s, zp) -> Transpose -> Relu -> y        (opset >= 21)

fails to load at ``ORT_ENABLE_EXTENDED`` and ``ORT_ENABLE_ALL`` (ONNX Runtime's default) with
``QuantizeLinear output_dtype INT8 does not match y_zero_point type UINT8`` and loads at ``ORT_ENABLE_BASIC``:
QDQPropagationTransformer moves the DequantizeLinear past the Transpose by inserting a new Q/DQ pair after it, whose
Q carries ``output_dtype=INT8``; QDQS8ToU8Transformer then converts that pair's zero-point to UINT8 and leaves the
attribute, and the next type inference rejects the node. Disabling either transformer avoids it; at opset <= 20
(no ``output_dtype`` attribute) and with UINT8 zero-points nothing fails. The form ``compsrt export`` writes at
opset >= 21, ``QuantizeLinear(s, output_dtype=INT8) -> DequantizeLinear(s)`` (same values: an omitted zero-point is
0), has no zero-point input for QDQS8ToU8Transformer to convert and loads at every level.

    .venv/bin/python -m benchmarks.export.ort_qdq_repro [--json out.json]

Prints one JSON line per case: form, layout op, opset, and per optimization level ``ok`` or the error.
``tests/test_conformance.py`` asserts the outcome, so it says when ONNX Runtime changes.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FORMS = ("zero_point", "output_dtype")  # zero_point: Q/DQ(s, int8 0); output_dtype: Q(s, output_dtype=INT8), DQ(s)
LEVELS = ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
SCALE = 0.05


def case_graph(form: str = "zero_point", layout: str = "Transpose", opset: int = 21) -> onnx.ModelProto:
    """x (8, 8) -> Q -> DQ -> ``layout`` (Transpose | Reshape | Identity) -> Relu -> y, in the given Q/DQ ``form``."""
    if form not in FORMS:
        raise ValueError(form)
    inits = [numpy_helper.from_array(np.array(SCALE, np.float32), "s"),
             numpy_helper.from_array(np.array([8, 8], np.int64), "shape")]
    if form == "zero_point":
        inits.append(numpy_helper.from_array(np.array(0, np.int8), "zp"))
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"])]
    else:
        nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"], output_dtype=TensorProto.INT8),
                 helper.make_node("DequantizeLinear", ["q", "s"], ["d"])]
    if layout == "Transpose":
        nodes.append(helper.make_node("Transpose", ["d"], ["t"], perm=[1, 0]))
    elif layout == "Reshape":
        nodes.append(helper.make_node("Reshape", ["d", "shape"], ["t"]))
    elif layout == "Identity":
        nodes.append(helper.make_node("Identity", ["d"], ["t"]))
    else:
        raise ValueError(layout)
    nodes.append(helper.make_node("Relu", ["t"], ["y"]))
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(nodes, f"qdq_{form}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])],
                              [t for t in inits if t.name in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 8  # what ONNX Runtime 1.31 reads
    onnx.checker.check_model(model, full_check=True)
    return model


def reference(x: np.ndarray, layout: str = "Transpose") -> np.ndarray:
    """What every case computes: relu(layout(clip(rint(x / s), -128, 127) * s))."""
    d = np.clip(np.rint(x / np.float32(SCALE)), -128, 127).astype(np.float32) * np.float32(SCALE)
    return np.maximum(d.T if layout == "Transpose" else d, 0)


def load_and_run(model: onnx.ModelProto, level: str | None, x: np.ndarray,
                 disabled: tuple[str, ...] = ()) -> np.ndarray:
    """Run ``model`` in an InferenceSession at ``level`` (None: ONNX Runtime's defaults, no options at all)."""
    import onnxruntime as ort

    if level is None and not disabled:
        sess = ort.InferenceSession(model.SerializeToString())
    else:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if level is not None:
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(disabled))
    return sess.run(None, {"x": x})[0]


def outcome(model: onnx.ModelProto, level: str | None, x: np.ndarray, layout: str = "Transpose",
            disabled: tuple[str, ...] = ()) -> str:
    """``ok`` (loads, runs and computes the reference exactly), ``wrong`` or the load error's first line."""
    try:
        y = load_and_run(model, level, x, disabled)
    except Exception as exc:  # onnxruntime raises its own exception types; the message is the result
        return str(exc).splitlines()[0]
    return "ok" if np.array_equal(y, reference(x, layout)) else "wrong"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(scale=3.0, size=(8, 8)).astype(np.float32)
    rows = []
    for form in FORMS:
        for layout in ("Transpose", "Reshape", "Identity"):
            for opset in (20, 21, 23) if form == "zero_point" else (21, 23):  # output_dtype: opset >= 21
                m = case_graph(form, layout, opset)
                row = {"form": form, "layout": layout, "opset": opset, "onnxruntime": ort.__version__}
                row.update({lv: outcome(m, lv, x, layout) for lv in LEVELS})
                row["default_session"] = outcome(m, None, x, layout)
                for t in ("QDQPropagationTransformer", "QDQS8ToU8Transformer"):
                    row[f"EXTENDED without {t}"] = outcome(m, "ORT_ENABLE_EXTENDED", x, layout, (t,))
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        from compsrt.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

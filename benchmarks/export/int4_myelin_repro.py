"""Minimal graphs for the TensorRT-RTX INT4 failure (``MyelinCheckException: operand.h:524: CHECK(is_constant())``).

Each case is a tiny ONNX graph around one MatMul whose weight is an INT4 constant behind a blocked
DequantizeLinear (axis 0 = K of the (K, N) weight); the cases differ in what precedes the MatMul, in K and
in the block size. Every case is parsed and built with TensorRT-RTX on the CPU (``compsrt.runtime.engine``)
in a subprocess of its own, so a crash cannot hide the other results. Prints one JSON line per case.

    .venv/bin/python -m benchmarks.export.int4_myelin_repro [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compsrt.export.surgery import int4_tensor

TOKENS, N = 64, 60


def case_graph(k: int, block: int, pre: str, act_qdq: bool, scales: str = "repeated", opset: int = 21) -> onnx.ModelProto:
    """x (1, TOKENS, k) -> [pre] -> [INT8 Q/DQ] -> MatMul(DQ_int4(W (k, N), blocks of `block` along K)) -> y.

    ``block`` 0: per-channel INT4 (1-D scale on axis 1) instead of blocks; ``scales`` "repeated": each column's
    scale repeated over its K blocks (what the export writes), "distinct": a different scale per block."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, N])
    t = "x"
    if pre == "matmul":  # a constant MatMul before the quantizer (our Hadamard)
        inits.append(numpy_helper.from_array((rng.standard_normal((k, k)) / np.sqrt(k)).astype(np.float32), "h"))
        nodes.append(helper.make_node("MatMul", [t, "h"], ["xh"]))
        t = "xh"
    elif pre == "relu":
        nodes.append(helper.make_node("Relu", [t], ["xr"]))
        t = "xr"
    if act_qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
        nodes += [helper.make_node("QuantizeLinear", [t, "s", "zp"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"])]
        t = "d"
    w = rng.integers(-8, 8, (k, N)).astype(np.int8)
    if block == 0:
        scale = rng.uniform(0.01, 0.02, N).astype(np.float32)
        attrs = {"axis": 1}
    else:
        rows = k // block
        scale = (np.repeat(rng.uniform(0.01, 0.02, (1, N)), rows, axis=0) if scales == "repeated"
                 else rng.uniform(0.01, 0.02, (rows, N))).astype(np.float32)
        attrs = {"axis": 0, "block_size": block}
    inits += [int4_tensor("w", w), numpy_helper.from_array(scale, "ws"), int4_tensor("wzp", np.zeros(scale.shape, np.int8))]
    nodes.append(helper.make_node("DequantizeLinear", ["w", "ws", "wzp"], ["wd"], **attrs))
    nodes.append(helper.make_node("MatMul", [t, "wd"], ["y"]))
    m = helper.make_model(helper.make_graph(nodes, "int4_case", [x], [y], inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m


CASES = [  # (K, block (0: per channel), what precedes the quantizer, INT8 Q/DQ on the activation, block scales)
    (64, 64, "none", True, "repeated"), (128, 128, "none", True, "repeated"), (128, 64, "none", False, "repeated"),
    (128, 64, "none", True, "repeated"), (128, 64, "none", True, "distinct"), (128, 64, "relu", True, "repeated"),
    (128, 64, "matmul", True, "repeated"), (128, 64, "matmul", False, "repeated"), (256, 128, "none", True, "repeated"),
    (128, 32, "none", True, "repeated"), (128, 0, "none", True, "-"), (128, 0, "none", False, "-"),
]

_CHILD = """
import json
from compsrt.runtime.engine import parse_and_build
r = parse_and_build({path!r})
err = [e for e in r.build_errors + r.parse_errors]
print("RESULT", json.dumps({{"parsed": r.parsed, "built": r.built, "engine_bytes": r.engine_bytes,
                             "version": r.version, "error": err[0][:240] if err else None}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    repo = str(Path(__file__).resolve().parents[2])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, block, pre, act, scales in CASES:
            path = str(Path(tmp) / f"k{k}_b{block}_{pre}_{int(act)}_{scales}.onnx")
            onnx.save(case_graph(k, block, pre, act, scales), path)
            p = subprocess.run([sys.executable, "-c", _CHILD.format(path=path)], capture_output=True, cwd=repo,
                               text=True, timeout=600)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            res = json.loads(line[7:]) if line else {"parsed": None, "built": None, "error": (p.stderr or p.stdout)[-240:]}
            res.update({"K": k, "block": block or "per-channel", "blocks_per_column": k // block if block else None,
                        "before": pre, "act_int8_qdq": act, "block_scales": scales})
            res.pop("version") if results else None
            results.append(res)
            print(json.dumps(res), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

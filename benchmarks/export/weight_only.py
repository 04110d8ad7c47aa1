"""Diagnostic: a compsrt graph with its activation Q/DQ pairs removed, beside ``compsrt export --activations fp``.

Why: the Q/DQ and fused-quant engines are larger than the FP engine (docs/export.md, "Engine sizes"). Removing
only the Q/DQ pairs keeps each site's ``Sub shift`` (its shift is folded into the next bias, so the activations
are exact FP): the engine then shows what the per-site shift constants cost, and ``--activations fp`` (no Q/DQ,
no shifts, FP biases) what is left.

    python -m benchmarks.export.weight_only in.onnx out.onnx [--fp-graph fp.onnx] [--score Set5,Set14 --scale 4 --json J]

``in.onnx``: ``compsrt export --hadamard matmul`` (``--batch dynamic`` for scoring in batches of 8). The scores use
ONNX Runtime exactly as ``modelopt_baseline.py`` scores its graphs; the engine comes from ``engine_sizes.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compsrt.files import atomic_path, atomic_write_text


def strip_activation_qdq(src: Path, dst: Path) -> int:
    """Write ``src`` without its activation QuantizeLinear -> DequantizeLinear pairs; return how many went.
    The sites' ``Sub shift`` stay (their shifts are folded into the next biases); ``compsrt export --activations
    fp`` leaves out both."""
    import onnx
    import onnx_graphsurgeon as gs

    from compsrt.export.surgery import replace_tensor

    graph = gs.import_onnx(onnx.load(str(src)))
    removed = 0
    for dq in [n for n in graph.nodes if n.op == "DequantizeLinear"]:
        q = dq.inputs[0].inputs[0] if dq.inputs[0].inputs else None
        if q is None or q.op != "QuantizeLinear" or isinstance(q.inputs[0], gs.Constant):
            continue  # a weight's DequantizeLinear (its input is an INT4 / INT8 initialiser)
        replace_tensor(dq.outputs[0], q.inputs[0])
        dq.outputs.clear()
        q.outputs.clear()
        removed += 1
    graph.cleanup().toposort()
    with atomic_path(dst) as tmp:
        onnx.save(gs.export_onnx(graph), str(tmp))
    return removed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--score", default="", help="datasets to score both graphs on (ONNX Runtime, CPU)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--fp-graph", type=Path, default=None,
                    help="the same checkpoint's `compsrt export --activations fp` graph, sized and scored beside them")
    args = ap.parse_args(argv)
    from benchmarks.export.modelopt_baseline import score, sizes

    res = {"src": str(args.src), "removed_pairs": strip_activation_qdq(args.src, args.dst)}
    graphs = {"src": args.src, "weight_only": args.dst} | ({"fp_export": args.fp_graph} if args.fp_graph else {})
    res["sizes"] = {k: sizes(v) for k, v in graphs.items()}
    if args.score:
        res["scores"] = {k: score(v, args.score.split(","), args.scale, args.threads) for k, v in graphs.items()}
    text = json.dumps(res, indent=1)
    if args.json:
        atomic_write_text(args.json, text)
    print(text if not args.json else f"wrote {args.json}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

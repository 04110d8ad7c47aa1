"""Diagnostic: a compsrt graph with its activation Q/DQ pairs removed (weight-only, like ModelOpt's INT4 mode).

Why: the Q/DQ and fused-quant engines are larger than the FP engine, and their extra size is the activation
quantizer sites (docs/export.md, "Engine sizes"). This answers what a weight-only W4 graph made from a compsrt
checkpoint would cost and give: the same INT4 weights and Hadamard rotations, FP activations (each site's
``Sub shift`` stays, its shift is folded into the next bias, so the activations are exact).

    python -m benchmarks.export.weight_only in.onnx out.onnx [--score Set5,Set14 --scale 4 --json out.json]

``in.onnx``: ``compsrt export --hadamard matmul`` (``--batch dynamic`` for scoring in batches of 8). The scores use
ONNX Runtime exactly as ``modelopt_baseline.py`` scores its graphs; the engine comes from ``engine_sizes.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compsrt.files import atomic_path, atomic_write_text


def _bypass(node, src, out) -> None:
    for consumer in list(out.outputs):
        consumer.inputs = [src if t is out else t for t in consumer.inputs]
    node.outputs.clear()


def strip_activation_qdq(src: Path, dst: Path, drop_shifts: bool = False) -> int:
    """Write ``src`` without its activation QuantizeLinear -> DequantizeLinear pairs; return how many went.
    ``drop_shifts``: also bypass each site's ``Sub shift`` (its bias correction stays, so the outputs are wrong:
    for engine sizes only, to see what the per-site shift constants cost)."""
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(onnx.load(str(src)))
    removed = 0
    if drop_shifts:
        for sub in [n for n in graph.nodes if n.op == "Sub" and n.name.endswith("/sub_shift")]:
            _bypass(sub, sub.inputs[0], sub.outputs[0])
    for dq in [n for n in graph.nodes if n.op == "DequantizeLinear"]:
        q = dq.inputs[0].inputs[0] if dq.inputs[0].inputs else None
        if q is None or q.op != "QuantizeLinear" or isinstance(q.inputs[0], gs.Constant):
            continue  # a weight's DequantizeLinear (its input is an INT4 / INT8 initialiser)
        _bypass(dq, q.inputs[0], dq.outputs[0])
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
    ap.add_argument("--drop-shifts", action="store_true", help="also bypass the sites' Sub shift (sizes only: wrong outputs)")
    args = ap.parse_args(argv)
    from benchmarks.export.modelopt_baseline import score, sizes

    res = {"src": str(args.src), "drop_shifts": args.drop_shifts,
           "removed_pairs": strip_activation_qdq(args.src, args.dst, args.drop_shifts)}
    res["sizes"] = {"src": sizes(args.src), "weight_only": sizes(args.dst)}
    if args.score:
        datasets = args.score.split(",")
        res["scores"] = {"src": score(args.src, datasets, args.scale, args.threads),
                         "weight_only": score(args.dst, datasets, args.scale, args.threads)}
    text = json.dumps(res, indent=1)
    if args.json:
        atomic_write_text(args.json, text)
    print(text if not args.json else f"wrote {args.json}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

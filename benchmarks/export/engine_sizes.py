"""TensorRT(-RTX) engine sizes and full builder logs for any list of ONNX graphs (issue 13).

Each ``NAME=PATH.onnx`` is built with compsrt's engine builder (``compsrt.runtime.engine.build_engine``, the code
behind ``compsrt build``: strongly typed, batch 1, the Python Hadamard plugin when the graph has plugin nodes,
detailed profiling verbosity, every log line down to VERBOSE kept) once per ``--compute-capabilities`` entry
(``all``: TensorRT-RTX's default, no target set; ``SM89`` etc.: one target). Writes per build the gzipped
builder log and the engine sidecar into ``--out-dir``, and one JSON with ONNX bytes, weight bytes by dtype,
engine bytes, and what the log says about the engine: the weights TensorRT stores ("Total Weights Memory"),
the plan's parts ("Adding N engine(s) / engine weights(s) to plan file"), the layers and tactics it chose.

    .venv/bin/python -m benchmarks.export.engine_sizes fp=/tmp/fp.onnx w4a4=/tmp/w4a4.onnx \\
        --compute-capabilities all,SM89 --engines /tmp/engines --out-dir benchmarks/export/results/engines
    .venv/bin/python -m benchmarks.export.engine_sizes --summary benchmarks/export/results/engines   # markdown table
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

_LOG_NUMBERS = {
    "weights_memory_bytes": r"Total Weights Memory: (\d+) bytes",
    "activation_memory_bytes": r"Total Activation Memory: (\d+) bytes",
    "host_persistent_bytes": r"Total Host Persistent Memory: (\d+) bytes",
    "custom_layer_data_bytes": r"Serialized custom layer data size: (\d+)",
    "plan_engines": r"Adding (\d+) engine\(s\) to plan file",
    "plan_engine_weights": r"Adding (\d+) engine weights\(s\) to plan file",
    "layers_after_myelin": r"After Myelin optimization: (\d+) layers",
}


_DTYPE_BITS = {"Float": 32, "Half": 16, "BFloat16": 16, "Int8": 8, "UInt8": 8, "FP8": 8, "Int4": 4, "FP4": 4,
               "Int32": 32, "Int64": 64, "Bool": 8}
_TENSOR = re.compile(r"\{ Name: ([^,]+), Dimensions: \[([^\]]*)\].*?Datatype: (\w+)")


def _section(line: str, key: str, ends: tuple[str, ...]) -> str:
    start = line.find(f"{key}: [")
    if start < 0:
        return ""
    cut = [line.find(e, start) for e in ends]
    cut = [c for c in cut if c > 0]
    return line[start:min(cut) if cut else len(line)]


def kernel_facts(lines: list[str]) -> dict:
    """The builder's per-kernel list inside the Myelin node ("Name: ..., LayerType: ..., TacticName: ..." lines):
    kernels by type, distinct tactics, GEMM operand dtypes, and the constants (the engine's weights) by dtype."""
    kinds: dict[str, int] = {}
    gemm: dict[str, int] = {}
    consts: dict[str, tuple[str, int]] = {}
    tactics = set()
    for ln in lines:
        if not ln.startswith("Name: ") or "LayerType:" not in ln:
            continue
        kind = ln.split("LayerType: ", 1)[1].split(",", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
        if "TacticName: " in ln:
            tactics.add(ln.split("TacticName: ", 1)[1].split(",", 1)[0])
        ins = _section(ln, "Inputs", (", Constants: [", ", Outputs: ["))
        cst = _section(ln, "Constants", (", Outputs: [",))
        if kind == "gemm":
            key = "x".join(sorted(t[2] for t in _TENSOR.findall(ins + cst)))
            gemm[key] = gemm.get(key, 0) + 1
        for name, dims, dtype in _TENSOR.findall(cst):
            n = 1
            for d in (x for x in dims.split(",") if x.strip()):
                n *= int(d)
            consts[name] = (dtype, n)
    by_dtype: dict[str, int] = {}
    for dtype, n in consts.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + (n * _DTYPE_BITS.get(dtype, 32) + 7) // 8
    return {"kernels": sum(kinds.values()), "kernels_by_type": dict(sorted(kinds.items())),
            "distinct_tactics": len(tactics), "gemm_operand_dtypes": dict(sorted(gemm.items())),
            "constant_bytes_by_dtype": dict(sorted(by_dtype.items())), "constants": len(consts)}


def log_facts(lines: list[str]) -> dict:
    """What the builder log says about the engine (numbers by regex, the engine's layer lines, arch mentions)."""
    text = "\n".join(lines)
    facts: dict = {}
    for key, pat in _LOG_NUMBERS.items():
        found = [int(v) for v in re.findall(pat, text)]
        facts[key] = found[-1] if len(found) == 1 else (found or None)
    facts["engine_layers"] = [ln for ln in lines if ln.startswith("Layer(")][:20]
    facts["tactic_choices"] = sorted({ln.split("Chose Runner Type:")[-1].strip() for ln in lines
                                      if "Chose Runner Type" in ln})[:20]
    archs = sorted({m for m in re.findall(r"\b(?:sm_?\d{2,3}|SM\d{2,3}|compute_\d{2,3})\b", text)})
    facts["arch_mentions"] = archs
    facts["cc_lines"] = [ln for ln in lines if re.search(r"compute capabilit|ComputeCapability|GPU famil", ln, re.I)][:10]
    facts["log_lines"] = len(lines)
    facts["myelin_kernels"] = kernel_facts(lines)
    return facts


def quantizer_constants(path: Path) -> dict:
    """Activation quantizer sites and how many distinct constant sets (scale, shift, Clip bounds) they carry:
    per-tensor QuantizeLinear with the ``Sub shift`` / ``Clip`` before it, or the quantizing plugin's attributes.
    Myelin compiles one kernel per distinct set in Q/DQ graphs (the ``--uniform-quantizers`` diagnostic)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}

    def scalar(name: str):
        a = init.get(name)
        return float(a.reshape(())) if a is not None and a.size == 1 else None

    sets = []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and scalar(n.input[1]) is not None:
            key, t = [scalar(n.input[1])], producers.get(n.input[0])
            while t is not None and t.op_type in ("Clip", "Sub"):
                key += [scalar(i) for i in t.input[1:]] if t.op_type == "Clip" else [("shift", scalar(t.input[1]))]
                t = producers.get(t.input[0])
            sets.append(tuple(key))
        elif n.domain == "compsrt":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            if a.get("quantize"):
                sets.append(tuple(a.get(k) for k in ("scale", "shift", "qmin", "qmax")))
    return {"sites": len(sets), "distinct": len(set(sets))}


def onnx_facts(path: Path) -> dict:
    from compsrt.export.inspect import inspect_model

    r = inspect_model(path)
    return {"onnx_bytes": r["onnx_bytes"], "weight_bytes_by_dtype": r["weight_bytes_by_dtype"],
            "qdq_pairs": r["qdq_pairs"], "weight_dequantize": r["weight_dequantize"],
            "hadamard_plugin_nodes": r["hadamard_plugin_nodes"], "opset": r["opset"],
            "activation_quantizers": quantizer_constants(path)}


def uniform_quantizers(src: Path, dst: Path) -> Path:
    """Diagnostic copy of a Q/DQ graph in which every activation quantizer has the same constants (scale, Clip
    bounds, shift 0): same structure and dtypes, so an engine-size change isolates the per-site constants."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    producers = {o: n for n in g.node for o in n.output}
    shared = {"scale": numpy_helper.from_array(np.array(0.05, np.float32), "uniform_q/scale"),
              "lo": numpy_helper.from_array(np.array(-8 * 0.05, np.float32), "uniform_q/lo"),
              "hi": numpy_helper.from_array(np.array(7 * 0.05, np.float32), "uniform_q/hi"),
              "zero": numpy_helper.from_array(np.array(0.0, np.float32), "uniform_q/zero")}
    g.initializer.extend(shared.values())
    act_scales = set()
    for n in g.node:
        if n.op_type != "QuantizeLinear":
            continue
        act_scales.add(n.input[1])
        n.input[1] = "uniform_q/scale"
        t = producers.get(n.input[0])
        while t is not None and t.op_type in ("Clip", "Sub"):
            if t.op_type == "Clip":
                t.input[1], t.input[2] = "uniform_q/lo", "uniform_q/hi"
            else:
                t.input[1] = "uniform_q/zero"
            t = producers.get(t.input[0])
    for n in g.node:  # the activation DequantizeLinears share their Q's scale
        if n.op_type == "DequantizeLinear" and n.input[1] in act_scales:
            n.input[1] = "uniform_q/scale"
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.save(m, str(dst))
    shutil.copyfile(src.with_name(src.name + ".json"), dst.with_name(dst.name + ".json"))
    return dst


def build_one(onnx_path: Path, engine: Path, cc: str | None, out_dir: Path, stem: str) -> dict:
    from compsrt.errors import CompsrtError
    from compsrt.runtime.engine import build_engine

    facts = onnx_facts(onnx_path)
    plugins = "python" if facts["hadamard_plugin_nodes"] else None
    t0 = time.perf_counter()
    try:
        res = build_engine(onnx_path, engine, plugins=plugins, batch=1, compute_capability=cc)
        side, ok, err = res.sidecar, True, None
    except CompsrtError as exc:
        side, ok, err = {}, False, str(exc)
    entry = {"built": ok, "error": err, "build_s": round(time.perf_counter() - t0, 1),
             "engine_bytes": engine.stat().st_size if ok else None, "plugins": plugins, "compute_capability": cc or "all"}
    log = engine.with_name(engine.name + ".build.log")
    if log.is_file():
        lines = log.read_text(errors="replace").splitlines()
        entry["log"] = log_facts(lines)
        with open(log, "rb") as src, gzip.open(out_dir / f"{stem}.build.log.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        entry["log_file"] = f"{stem}.build.log.gz"
    layers = engine.with_name(engine.name + ".layers.json")
    if layers.is_file():
        info = json.loads(layers.read_text())
        entry["inspector"] = info if not info.get("available") else {"available": True, "layers": len(info.get("Layers", []))}
    if ok:
        (out_dir / f"{stem}.engine.json").write_text(json.dumps(side, indent=1, sort_keys=True) + "\n")
    return {"onnx": str(onnx_path), **facts, "engine": entry}


def summary_table(folder: Path) -> str:
    """Markdown table over every ``sizes*.json`` in ``folder`` (one row per graph and target)."""
    rows = ["| graph | target | ONNX bytes | weight bytes by dtype (ONNX) | engine bytes | weights in engine | "
            "kernels (custom) | distinct kernels | GEMM operand dtypes | engine constants by dtype | build s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(folder.glob("sizes*.json")):
        for name, g in json.loads(f.read_text())["graphs"].items():
            for cc, e in g["engines"].items():
                k = e.get("log", {}).get("myelin_kernels", {})
                fmt = lambda d: ", ".join(f"{a} {b:,}" for a, b in d.items())  # noqa: E731
                rows.append(f"| {name} | {cc} | {g['onnx_bytes']:,} | {fmt(g['weight_bytes_by_dtype'])} | "
                            f"{e['engine_bytes'] or 0:,} | {e.get('log', {}).get('weights_memory_bytes') or 0:,} | "
                            f"{k.get('kernels', 0)} ({k.get('kernels_by_type', {}).get('custom_layer', 0)}) | "
                            f"{k.get('distinct_tactics', 0)} | {fmt(k.get('gemm_operand_dtypes', {}))} | "
                            f"{fmt(k.get('constant_bytes_by_dtype', {}))} | {e['build_s']} |")
    return "\n".join(rows)


def main() -> int:
    if sys.argv[1:2] == ["--summary"]:
        if len(sys.argv) != 3:
            raise SystemExit("usage: python -m benchmarks.export.engine_sizes --summary DIR")
        print(summary_table(Path(sys.argv[2])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graphs", nargs="+", help="NAME=PATH.onnx")
    ap.add_argument("--compute-capabilities", default="all", help="comma-separated: all (the default target set), SM89, ...")
    ap.add_argument("--engines", type=Path, required=True, help="folder for the engines (not committed)")
    ap.add_argument("--out-dir", type=Path, required=True, help="folder for sizes.json and the gzipped builder logs")
    ap.add_argument("--json", default="sizes.json", help="file name of the result JSON in --out-dir")
    ap.add_argument("--uniform-quantizers", action="store_true",
                    help="also build NAME_uniformq: the graph with one set of activation quantizer constants (diagnostic)")
    args = ap.parse_args()
    pairs = []
    for g in args.graphs:
        name, sep, path = g.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"{g!r}: expected NAME=PATH to an existing .onnx file")
        pairs.append((name, Path(path)))
    args.engines.mkdir(parents=True, exist_ok=True)
    if args.uniform_quantizers:
        pairs += [(f"{n}_uniformq", uniform_quantizers(p, args.engines / f"{n}_uniformq.onnx")) for n, p in list(pairs)]
    ccs = [c for c in args.compute_capabilities.split(",") if c]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from compsrt.runtime.engine import tensorrt

    trt = tensorrt()
    out = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), no GPU",
           "tensorrt": {"module": trt.__name__, "version": trt.__version__},
           "compute_capabilities_known": list(getattr(trt, "ComputeCapability", {}).__members__)
           if hasattr(trt, "ComputeCapability") else None, "graphs": {}}
    dest = args.out_dir / args.json
    for name, path in pairs:
        for cc in ccs:
            stem = f"{name}_{cc.lower()}"
            r = build_one(path, args.engines / f"{stem}.plan", None if cc == "all" else cc, args.out_dir, stem)
            out["graphs"].setdefault(name, {"onnx": r["onnx"], **{k: v for k, v in r.items() if k not in ("engine", "onnx")},
                                            "engines": {}})["engines"][cc] = r["engine"]
            e = r["engine"]
            print(f"{stem}: built={e['built']} engine={e['engine_bytes']} B in {e['build_s']} s; weights memory "
                  f"{e.get('log', {}).get('weights_memory_bytes')} B", file=sys.stderr, flush=True)
            dest.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

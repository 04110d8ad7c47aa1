"""``compsrt inspect``: what an exported graph contains (Q/DQ pairs, Hadamards, per-layer precision, weight bytes)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..artifacts import FILE_MAGICS, file_kind
from ..errors import CompsrtError
from ..hadamard import PLUGIN_NAME as PLUGIN_OP  # not from .surgery: that imports torch, which engine builds lack
from ..models.parts import QUANTIZED, part_of

_BITS = {TensorProto.INT4: 4, TensorProto.UINT4: 4}


def _dtype_name(elem: int) -> str:
    return TensorProto.DataType.Name(elem).lower()


def _nbytes(t: onnx.TensorProto) -> int:
    n = int(np.prod(t.dims)) if t.dims else 1
    if t.data_type in _BITS:
        return (n * _BITS[t.data_type] + 7) // 8
    return n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize


def _is_hadamard_const(arr: np.ndarray) -> bool:
    if arr.ndim != 2 or arr.size == 0:
        return False
    n = max(arr.shape)
    if n & (n - 1):
        return False
    return bool(np.allclose(np.abs(arr), 1.0 / np.sqrt(n), rtol=1e-6, atol=0))


INIT_KINDS = ("weights", "codes", "scales", "hadamard", "position_bias", "masks", "other")


def initializer_kinds(g: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> dict[str, str]:
    """What each initialiser is, from how the graph uses it (so it also reads graphs other tools wrote).

    codes: integer input 0 of a DequantizeLinear; scales: scale / zero-point of a Q or DQ; hadamard: a
    +-1/sqrt(n) matrix; position_bias: the table a Gather reads, or an expanded (1, heads, n, n) bias;
    masks: the shifted-window mask (rank 5, n x n) or its region ids; weights: other float tensors of
    more than one element; other: indices, shapes and scalars (Clip bounds, shifts).
    """
    kinds: dict[str, str] = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            if name not in inits or name in kinds:
                continue
            t = inits[name]
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                kinds[name] = "codes" if i == 0 and t.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16) else "scales"
            elif n.op_type == "Gather" and i == 0:
                kinds[name] = "position_bias"
    for name, t in inits.items():
        if name in kinds:
            continue
        dims = list(t.dims)
        is_float = t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
        size = int(np.prod(dims)) if dims else 1
        if size > 1 and ("shift_mask" in name or (is_float and len(dims) == 5 and dims[-1] == dims[-2])):
            kinds[name] = "masks"
        elif is_float and len(dims) == 4 and dims[0] == 1 and dims[-1] == dims[-2] and dims[-1] >= 16:
            kinds[name] = "position_bias"
        elif is_float and len(dims) == 2 and _is_hadamard_const(numpy_helper.to_array(t)):
            kinds[name] = "hadamard"
        elif is_float and size > 1:
            kinds[name] = "weights"
        else:
            kinds[name] = "other"
    return kinds


def initializer_summary(g: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> dict:
    """Initialiser bytes (as stored) by kind, and the initialisers whose contents repeat an earlier one."""
    kinds = initializer_kinds(g, inits)
    by_kind = {k: 0 for k in INIT_KINDS}
    seen: dict[tuple, str] = {}
    dups: list[list[str]] = []
    dup_bytes = 0
    for name, t in inits.items():
        by_kind[kinds[name]] += _nbytes(t)
        key = (t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes())
        if key in seen:
            dups.append([seen[key], name])
            dup_bytes += _nbytes(t)
        else:
            seen[key] = name
    return {"initializer_bytes_by_kind": by_kind, "duplicate_initializers": {"count": len(dups), "bytes": dup_bytes,
                                                                             "pairs": dups[:20]}}


def _param_name(init_name: str) -> str:
    """``model.layers.0.conv.weight`` / ``layers.0...mlp.fc1/bias`` -> the model's parameter name."""
    return init_name.removeprefix("model.").replace("/", ".")


def parameter_summary(inits: dict[str, onnx.TensorProto], kinds: dict[str, str], counts: dict | None = None) -> dict:
    """The model's parameters as the graph stores them: quantized weight codes, the parts kept in floating
    point (:mod:`compsrt.models.parts`, by initialiser name), and bits per parameter overall = (codes + FP parts +
    quantization scales) bytes over the model's parameters. ``counts`` (the sidecar's ``parameters``) gives the
    model's count and its quantized weights; codes are stored padded to the Hadamard size, so without it the
    stored values are counted instead. Graph constants that are no parameters (Hadamard matrices, masks,
    indices, shapes) are counted apart."""
    codes = {"values": 0, "bytes": 0, "dtypes": Counter()}
    fp: dict[str, dict] = {}
    scales = {"values": 0, "bytes": 0}
    constants = 0
    for name, t in inits.items():
        n, b, kind = (int(np.prod(t.dims)) if t.dims else 1), _nbytes(t), kinds[name]
        part = QUANTIZED if name.startswith("onnx::MatMul") else part_of(_param_name(name))  # FP Linear weights
        if kind == "codes":
            codes["values"] += n
            codes["bytes"] += b
            codes["dtypes"][_dtype_name(t.data_type)] += n
        elif kind in ("weights", "position_bias") and part != "other":  # in an FP graph, the Linears too
            entry = fp.setdefault(part, {"values": 0, "bytes": 0, "dtype": _dtype_name(t.data_type)})
            entry["values"] += n
            entry["bytes"] += b
        elif kind == "scales" or name.endswith(("/shift", "/scale", "/zero_point")):  # Q/DQ scales, activation shifts
            scales["values"] += n
            scales["bytes"] += b
        else:
            constants += b
    weights = (counts or {}).get("quantized_weights") or codes["values"]
    params = (counts or {}).get("model") or codes["values"] + sum(p["values"] for p in fp.values())
    stored = codes["bytes"] + sum(p["bytes"] for p in fp.values()) + scales["bytes"]
    return {"quantized_weights": {"weights": weights if codes["values"] else 0, "values": codes["values"],
                                  "bytes": codes["bytes"], "dtypes": dict(codes["dtypes"]),
                                  "bits_per_weight": 8 * codes["bytes"] / weights if codes["values"] else None},
            "fp_parts": fp, "quantization_constants": scales, "graph_constants_bytes": constants,
            "parameters": params, "parameters_from": "sidecar" if counts else "stored values",
            "stored_bytes": stored, "bits_per_param": 8 * stored / params if params else None}


def _site_of(node_name: str, suffixes: tuple[str, ...]) -> str:
    for suf in suffixes:
        if node_name.endswith(suf):
            return node_name[: -len(suf)]
    return node_name


def quant_bits(g: onnx.GraphProto, inits: dict[str, onnx.TensorProto], producer: dict, declared: dict | None) -> dict:
    """Bit-widths as the graph enforces them, per site, against the sidecar's ``site_bits`` (``declared``).

    Activation: the integer range of the Clip before a QuantizeLinear (``round(bound / scale)``; a range that
    is no signed b-bit one is shown as ``[lo, hi]``), else the container's (8 bits for INT8). Weight: the initialiser's dtype and its codes' range. ``matches``: every
    activation range is the declared one, every weight code lies in its declared b-bit range, and only weights
    of at most 4 bits are INT4.
    """
    acts: dict[str, int] = {}
    weights: dict[str, dict] = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            site = _site_of(n.name, ("/act/quantize", "/quantize"))
            s = float(numpy_helper.to_array(inits[n.input[1]]).reshape(-1)[0]) if n.input[1] in inits else None
            clip = producer.get(n.input[0])
            bounds = [numpy_helper.to_array(inits[i]) for i in clip.input[1:3] if i in inits] if clip is not None \
                and clip.op_type == "Clip" else []
            if s and len(bounds) == 2 and all(v.size == 1 for v in bounds):
                lo, hi = (int(round(float(v.reshape(-1)[0]) / s)) for v in bounds)
                levels = hi - lo + 1
                signed = levels > 1 and levels & (levels - 1) == 0 and lo == -(levels // 2)
                acts[site] = levels.bit_length() - 1 if signed else f"[{lo}, {hi}]"
            else:
                zp = inits.get(n.input[2]) if len(n.input) > 2 else None
                acts[site] = _BITS.get(zp.data_type, 8) if zp is not None else 8
        elif n.op_type == "DequantizeLinear" and n.input[0] in inits:
            t = inits[n.input[0]]
            codes = numpy_helper.to_array(t)
            weights[_site_of(n.name, ("/weight_dequantize",))] = {
                "dtype": _dtype_name(t.data_type), "min": int(codes.min()), "max": int(codes.max())}
    out = {"activation_bits": dict(sorted(Counter(acts.values()).items(), key=str)),
           "weight_storage": dict(sorted(Counter(w["dtype"] for w in weights.values()).items()))}
    if declared:
        wdecl = {k: v["w"] for k, v in declared.items() if "w" in v}
        out["weight_bits"] = dict(sorted(Counter(wdecl.values()).items()))
        bad = [k for k, v in declared.items() if acts.get(k) != v["a"]]
        for k, b in wdecl.items():
            w = weights.get(k)
            in_range = w is not None and -(1 << (b - 1)) <= w["min"] and w["max"] <= (1 << (b - 1)) - 1
            if not in_range or (w["dtype"] == "int4" and b > 4):  # <= 4 bits may sit in INT8 (--weight-storage int8)
                bad.append(k)
        out.update(sites=len(declared), matches=not bad, mismatched_sites=sorted(set(bad))[:20])
    out["per_site"] = {k: ({"a": acts.get(k)} | ({"w": weights[k]} if k in weights else {})) for k in sorted(set(acts) | set(weights))}
    return out


def load_onnx(path: str | os.PathLike, external_data: bool = True) -> onnx.ModelProto:
    """An ONNX model with a graph, or a one-line error saying what the file is instead.

    A 0-byte file parses as an empty ModelProto and some non-ONNX bytes parse too, so "it parsed" is
    not enough: a model has at least one input, one output and one node.
    """
    path = Path(path)
    if not path.is_file():
        raise CompsrtError(f"ONNX model {path} does not exist; create it with `compsrt export`")
    if path.stat().st_size == 0:
        raise CompsrtError(f"ONNX model {path} is empty (0 bytes): no graph; re-run `compsrt export`")
    with open(path, "rb") as f:
        head = f.read(4)
    kind = file_kind(head)
    if kind is not None and kind != FILE_MAGICS[b"\x08"]:
        raise CompsrtError(f"{path} is {kind}, not an ONNX model; pass the .onnx written by `compsrt export`")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf DecodeError, missing external data
        raise CompsrtError(f"cannot read {path} as ONNX ({exc.__class__.__name__}: "
                           f"{(str(exc).splitlines() or [''])[0][:200]}); pass the .onnx written by `compsrt export`") from None
    g = model.graph
    if not (g.node and g.input and g.output):
        raise CompsrtError(f"{path} holds no graph ({len(g.node)} nodes, {len(g.input)} inputs, {len(g.output)} "
                           "outputs): not an ONNX model; pass the .onnx written by `compsrt export`")
    return model


def inspect_model(model: onnx.ModelProto | str | os.PathLike) -> dict:
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    for node in g.node:  # Constant nodes count as initialisers
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            inits[node.output[0]] = node.attribute[0].t
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    types: dict[str, int] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for name, t in inits.items():
        types[name] = t.data_type

    ops = Counter(n.op_type for n in g.node)
    q_nodes = [n for n in g.node if n.op_type == "QuantizeLinear"]
    pairs = sum(1 for q in q_nodes if any(c.op_type == "DequantizeLinear" for c in consumers.get(q.output[0], [])))
    nonzero_zp = []
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            if np.any(numpy_helper.to_array(inits[n.input[2]]) != 0):
                nonzero_zp.append(n.name)
    hadamard_matmuls = []
    for n in g.node:
        if n.op_type == "MatMul":
            for i in n.input:
                if i in inits and _is_hadamard_const(numpy_helper.to_array(inits[i])):
                    hadamard_matmuls.append(n.name)
                    break
    had_set = set(hadamard_matmuls)

    def operand_precision(name: str) -> str:
        p = producer.get(name)
        while p is not None and p.op_type in ("Transpose", "Reshape", "Identity"):  # layout ops keep the dtype
            name = p.input[0]
            p = producer.get(name)
        if p is not None and p.op_type == "DequantizeLinear":
            src = p.input[0]
            return _dtype_name(types.get(src, TensorProto.UNDEFINED))
        if name in inits:
            return _dtype_name(inits[name].data_type)
        return _dtype_name(types.get(name, TensorProto.UNDEFINED))

    layers = []
    for n in g.node:
        if n.op_type not in ("MatMul", "Conv", "Gemm"):
            continue
        kind = "hadamard" if n.name in had_set else n.op_type.lower()
        precs = [operand_precision(i) for i in n.input[:2]]
        layers.append({"name": n.name, "op": n.op_type, "kind": kind, "inputs": precs,
                       "quantized": all(p in ("int8", "int4", "uint8") for p in precs)})
    by_prec = Counter(f"{l['kind']}:{'x'.join(l['inputs'])}" for l in layers)
    weight_bytes: Counter = Counter()
    weight_count: Counter = Counter()
    for t in inits.values():
        weight_bytes[_dtype_name(t.data_type)] += _nbytes(t)
        weight_count[_dtype_name(t.data_type)] += 1
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        sidecar = json.loads(meta.get("compsrt.sidecar", "{}"))
    except ValueError:
        sidecar = {}
    return {
        "onnx_bytes": model.ByteSize(),
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [_io(vi) for vi in g.input if vi.name not in inits],
        "outputs": [_io(vi) for vi in g.output],
        "nodes": len(g.node),
        "op_counts": dict(sorted(ops.items())),
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "qdq_pairs": pairs,
        "weight_dequantize": sum(1 for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits),
        "nonzero_zero_points": nonzero_zp,
        "hadamard_plugin_nodes": ops.get(PLUGIN_OP, 0),
        "hadamard_matmul_nodes": len(hadamard_matmuls),
        "layers": layers,
        "layer_precision_counts": dict(sorted(by_prec.items())),
        "weight_bytes_by_dtype": dict(sorted(weight_bytes.items())),
        "weight_tensors_by_dtype": dict(sorted(weight_count.items())),
        **initializer_summary(g, inits),
        "parameters": parameter_summary(inits, initializer_kinds(g, inits), sidecar.get("parameters")),
        "precision_label": sidecar.get("precision_label"),
        "site_bits": sidecar.get("site_bits"),
        "quant_bits": quant_bits(g, inits, producer, sidecar.get("site_bits")),
        "metadata": {k: v for k, v in meta.items() if k != "compsrt.sidecar"},
    }


def _io(vi) -> dict:
    dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    return {"name": vi.name, "dtype": _dtype_name(vi.type.tensor_type.elem_type), "shape": dims}


def format_report(r: dict, show_layers: bool = False) -> str:
    lines = [
        "inputs : " + ", ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in r["inputs"]),
        "outputs: " + ", ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in r["outputs"]),
        f"opset  : {r['opset']}   nodes: {r['nodes']}",
        f"Q/DQ   : {r['qdq_pairs']} activation Q/DQ pairs, {r['weight_dequantize']} weight DequantizeLinear, "
        f"{r['quantize_linear']} QuantizeLinear / {r['dequantize_linear']} DequantizeLinear in all"
        + (f"; NON-ZERO zero-points: {len(r['nonzero_zero_points'])}" if r["nonzero_zero_points"] else ""),
        f"Hadamard: {r['hadamard_plugin_nodes']} HadamardTransform plugin nodes, {r['hadamard_matmul_nodes']} constant MatMuls",
        "MatMul/Conv precision (kind:operand dtypes -> count):",
    ]
    lines += [f"  {k:<32} {v}" for k, v in r["layer_precision_counts"].items()]
    if show_layers:
        lines += [f"    {l['name']:<70} {l['op']:<7} {'x'.join(l['inputs'])}" for l in r["layers"]]
    lines.append("weights by dtype (bytes / tensors):")
    lines += [f"  {k:<10} {v:>12,d} B  {r['weight_tensors_by_dtype'][k]:>5}" for k, v in r["weight_bytes_by_dtype"].items()]
    lines.append(f"initialisers by kind (bytes), ONNX {r['onnx_bytes']:,} B in all:")
    lines += [f"  {k:<14} {v:>12,d} B" for k, v in r["initializer_bytes_by_kind"].items() if v]
    q = r["quant_bits"]
    if q["activation_bits"] or q["weight_storage"]:
        lines.append(f"bits   : {r['precision_label'] or '-'}; activation Q/DQ by enforced bits "
                     + (", ".join(f"{k}-bit x{v}" for k, v in q["activation_bits"].items()) or "none (FP activations)")
                     + "; weights by storage " + ", ".join(f"{k} x{v}" for k, v in q["weight_storage"].items())
                     + ("; declared weight bits " + ", ".join(f"{k}-bit x{v}" for k, v in q["weight_bits"].items())
                        if "weight_bits" in q else "")
                     + ("" if "matches" not in q else f"; graph matches the sidecar's per-site bits: {q['matches']}"))
    lines += parameter_lines(r["parameters"])
    d = r["duplicate_initializers"]
    lines.append(f"duplicate initialisers: {d['count']} ({d['bytes']:,} B)")
    if r["metadata"]:
        lines.append("metadata: " + ", ".join(f"{k}={v}" for k, v in r["metadata"].items()))
    return "\n".join(lines)


def parameter_lines(p: dict) -> list[str]:
    """The report's lines on bits: per quantized weight, per parameter overall, and what stays FP."""
    q, fp = p["quantized_weights"], p["fp_parts"]
    if not p["parameters"]:
        return ["parameters: none found"]
    fp_values = sum(v["values"] for v in fp.values())
    fp_types = "/".join(sorted({v["dtype"] for v in fp.values()})) or "float"
    lines = [f"bits/param: {p['bits_per_param']:.2f} bits per parameter overall ({p['stored_bytes']:,} B of quantized "
             f"weights, FP parameters and quantization scales for {p['parameters']:,} parameters"
             + (")" if p["parameters_from"] == "sidecar" else ", counted as stored: no sidecar counts)")]
    if q["values"]:
        pad = f", {q['values']:,} codes with the Hadamard padding" if q["values"] != q["weights"] else ""
        lines.append(f"  quantized: {q['weights']:,} Linear weights as {'/'.join(q['dtypes'])} codes{pad}: "
                     f"{q['bits_per_weight']:.2f} bits per quantized weight; scales and shifts of weights and "
                     f"activations {p['quantization_constants']['bytes']:,} B")
    else:
        lines.append("  quantized: none (an FP graph)")
    lines.append(f"  floating point ({fp_types}): {fp_values:,} parameters: "
                 + ", ".join(f"{k} {v['values']:,}" for k, v in sorted(fp.items(), key=lambda kv: -kv[1]["values"])))
    lines.append(f"  not parameters: {p['graph_constants_bytes']:,} B of graph constants (Hadamard matrices, "
                 "window masks, indices, shapes)")
    return lines

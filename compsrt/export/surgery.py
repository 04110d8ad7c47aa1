"""Graph surgery with onnx-graphsurgeon: site markers -> Hadamard + Q/DQ subgraphs; cleanup.

Subgraph of a quantized Linear (activation of real width m, padded width n, ``out`` outputs)::

    x (.., m) -> Hadamard(n, width=m) -> [Sub shift] -> Clip(qmin*s, qmax*s) -> QuantizeLinear(s, 0)
      -> DequantizeLinear(s, 0) -> MatMul <- DequantizeLinear(codes^T int8 (n, out), s_w (out,), axis=1)
      -> Add(folded bias)

An attention operand is the same up to the DequantizeLinear (q, k, probabilities rotated along their
last axis; v rotated along the token axis). Zero-points are always 0 (TensorRT's explicit
quantization is symmetric; at opset >= 21 the activation quantizers omit it: :func:`int8_by_attribute`);
the b-bit range is enforced by the Clip (QuantizeLinear itself only saturates to the INT8 container); the
asymmetric activation offset ("shift") is subtracted before quantizing and its contribution is folded into the bias
of the consuming Linear.

``hadamard="matmul"`` writes each Hadamard as a MatMul by the constant ``H_n[:m]`` (standard ops);
``hadamard="plugin"`` writes a ``HadamardTransform`` node for the TensorRT plugin of
:mod:`compsrt.plugins` (last axis only: the token-axis rotation of v becomes Transpose, Hadamard,
Transpose). ``hadamard="fused-quant"`` goes one step further: each ``Hadamard -> [Sub] -> [Clip] ->
QuantizeLinear`` chain becomes one plugin node in its quantizing mode (``quantize=1``, INT8 codes out), which
the site's DequantizeLinear consumes directly (for v: Transpose, plugin, DequantizeLinear, Transpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import CompsrtError
from ..hadamard import PLUGIN_NAME, PLUGIN_NAMESPACE, hadamard_matrix, onnx_node_attributes
from ..sites import Site
from .graph import SITE_DOMAIN, TraceConstant

PLUGIN_OP, PLUGIN_DOMAIN = PLUGIN_NAME, PLUGIN_NAMESPACE  # the plugin's registry name is the ONNX op
HADAMARD_VARIANTS = ("plugin", "matmul", "fused-quant")
PLUGIN_VARIANTS = ("plugin", "fused-quant")  # the variants that need the TensorRT plugin


def int4_tensor(name: str, values: np.ndarray) -> onnx.TensorProto:
    """INT4 TensorProto in raw_data, two values a byte, the first in the low nibble (ONNX's packing).

    ``make_tensor`` from a list would write int32_data varints instead: about 1.4x the size of the packed codes.
    """
    flat = values.astype(np.int8).reshape(-1)
    if flat.min(initial=0) < -8 or flat.max(initial=0) > 7:
        raise CompsrtError(f"{name}: values outside [-8, 7] cannot be stored as INT4")
    nib = (flat.astype(np.uint8) & 0x0F)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    packed = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()
    return onnx.helper.make_tensor(name, onnx.TensorProto.INT4, values.shape, packed, raw=True)


@dataclass
class HadamardRecord:
    node: gs.Node  # the MatMul written by the matmul variant
    n: int
    m: int
    axis: str


@dataclass
class QuantRecord:
    """One activation quantizer ``DQ(Q(clip(source - shift)))``, by tensor names (they survive re-import)."""
    source: str  # the rotated tensor the chain starts from
    codes: str  # the QuantizeLinear's INT8 output
    scale: float
    shift: float
    qmin: int
    qmax: int


class Builder:
    """Adds named subgraphs to a gs.Graph."""

    def __init__(self, graph: gs.Graph, fp_activations: bool = False):
        self.graph = graph
        self.fp_activations = fp_activations  # weight-only: the rotated activations go on in FP (no Q/DQ, no shift)
        self.hadamards: list[HadamardRecord] = []
        self.quants: list[QuantRecord] = []
        self._rot_cache: dict[tuple, gs.Variable] = {}
        self._names: set[str] = set()

    def _name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def const(self, base: str, values: np.ndarray) -> gs.Constant:
        return gs.Constant(self._name(base), values=np.ascontiguousarray(values))

    def int4_const(self, base: str, values: np.ndarray) -> gs.Constant:
        """An INT4 initialiser (onnx-graphsurgeon cannot write INT4 itself: wrap a ready TensorProto)."""
        from onnx_graphsurgeon.ir.tensor import LazyValues

        name = self._name(base)
        return gs.Constant(name, values=LazyValues(int4_tensor(name, values)))

    def var(self, base: str, dtype=np.float32) -> gs.Variable:
        return gs.Variable(self._name(base), dtype=dtype)

    def node(self, op: str, base: str, inputs: list, outputs: list, attrs: dict | None = None, domain: str | None = None):
        node = gs.Node(op=op, name=self._name(base), attrs=attrs or {}, inputs=inputs, outputs=outputs)
        if domain:
            node.domain = domain
        self.graph.nodes.append(node)
        return node

    # -- pieces --------------------------------------------------------------------------------
    def hadamard(self, prefix: str, x: gs.Variable, n: int, m: int, axis: str = "last") -> gs.Variable:
        """Rotated ``x`` (one MatMul by a constant; shared by sites that rotate the same tensor)."""
        key = (x.name, n, m, axis)
        if key in self._rot_cache:
            return self._rot_cache[key]
        h = hadamard_matrix(n, np.float32)
        y = self.var(f"{prefix}/hadamard_out")
        if axis == "last":
            node = self.node("MatMul", f"{prefix}/hadamard", [x, self.const(f"{prefix}/H{n}", h[:m, :])], [y])
        elif axis == "tokens":
            node = self.node("MatMul", f"{prefix}/hadamard", [self.const(f"{prefix}/H{n}", h[:, :m]), x], [y])
        else:
            raise ValueError(axis)
        self.hadamards.append(HadamardRecord(node, n, m, axis))
        self._rot_cache[key] = y
        return y

    def qdq(self, prefix: str, t: gs.Variable, scale: float, shift: float, qmin: int, qmax: int) -> gs.Variable:
        """DQ(Q(clip(t - shift, qmin*s, qmax*s))) with zero-point 0 on INT8."""
        if not (-128 <= qmin <= 0 <= qmax <= 127):
            raise CompsrtError(f"{prefix}: integer range [{qmin}, {qmax}] does not fit a symmetric INT8 container")
        if not (np.isfinite(scale) and scale > 0):
            raise CompsrtError(f"{prefix}: activation scale {scale} is not a positive finite number")
        s = np.array(scale, dtype=np.float32)
        zp = np.array(0, dtype=np.int8)
        source = t.name
        if shift != 0.0:
            shifted = self.var(f"{prefix}/shifted")
            self.node("Sub", f"{prefix}/sub_shift", [t, self.const(f"{prefix}/shift", np.array(shift, np.float32))], [shifted])
            t = shifted
        if (qmin, qmax) != (-128, 127):
            clipped = self.var(f"{prefix}/clipped")
            lo, hi = np.float32(qmin) * s, np.float32(qmax) * s
            self.node("Clip", f"{prefix}/clip", [t, self.const(f"{prefix}/lo", np.array(lo, np.float32)),
                                                  self.const(f"{prefix}/hi", np.array(hi, np.float32))], [clipped])
            t = clipped
        q = self.var(f"{prefix}/q", dtype=np.int8)
        sc, zc = self.const(f"{prefix}/scale", s), self.const(f"{prefix}/zero_point", zp)
        self.node("QuantizeLinear", f"{prefix}/quantize", [t, sc, zc], [q])
        self.quants.append(QuantRecord(source, q.name, float(s), float(shift), int(qmin), int(qmax)))
        d = self.var(f"{prefix}/dq")
        self.node("DequantizeLinear", f"{prefix}/dequantize", [q, sc, zc], [d])
        return d

    def weight(self, prefix: str, codes: np.ndarray, w_scale: np.ndarray, int4_block: int | None = None) -> gs.Variable:
        """DequantizeLinear of the transposed weight codes (n, out), per output channel (axis 1).

        ``int4_block`` None: INT8 container; 0: INT4 codes, per-channel scales (what TensorRT-RTX builds);
        > 0: INT4 codes in blocks of that size along K (axis 0), each column's scale repeated over its blocks.
        """
        wt = np.ascontiguousarray(codes.T)
        out = wt.shape[1]
        d = self.var(f"{prefix}/weight_dq")
        if int4_block is None:
            self.node("DequantizeLinear", f"{prefix}/weight_dequantize",
                      [self.const(f"{prefix}/weight_int8", wt.astype(np.int8)),
                       self.const(f"{prefix}/weight_scale", w_scale.astype(np.float32).reshape(out)),
                       self.const(f"{prefix}/weight_zero_point", np.zeros(out, np.int8))], [d], {"axis": 1})
            return d
        if wt.min() < -8 or wt.max() > 7:
            raise CompsrtError(f"{prefix}: weight codes outside [-8, 7] cannot be stored as INT4")
        k = wt.shape[0]
        if int4_block == 0:
            scale, attrs = w_scale.astype(np.float32).reshape(out), {"axis": 1}
        else:
            block = min(int4_block, k)
            if k % block:
                raise CompsrtError(f"{prefix}: K={k} is not a multiple of the INT4 block {block}")
            scale = np.repeat(w_scale.reshape(1, out).astype(np.float32), k // block, axis=0)
            attrs = {"axis": 0, "block_size": block}
        wc = self.int4_const(f"{prefix}/weight_int4", wt)
        zc = self.int4_const(f"{prefix}/weight_zero_point", np.zeros(scale.shape, dtype=np.int8))
        self.node("DequantizeLinear", f"{prefix}/weight_dequantize",
                  [wc, self.const(f"{prefix}/weight_scale", scale), zc], [d], attrs)
        return d

    # -- sites ---------------------------------------------------------------------------------
    def linear_site(self, site: Site, x: gs.Variable, y: gs.Variable, int4_block: int | None = None) -> None:
        p = site.name
        rot = self.hadamard(p, x, site.n, site.m, "last")
        if self.fp_activations:  # no shift to compensate: the FP bias
            a, bias = rot, site.bias_fp
        else:
            a, bias = self.qdq(f"{p}/act", rot, site.scale, site.shift, site.qmin, site.qmax), site.bias
        use_int4 = int4_block if int4_site(site) else None
        w = self.weight(p, site.codes, site.w_scale, use_int4)
        mm = self.var(f"{p}/matmul_out")
        self.node("MatMul", f"{p}/matmul", [a, w], [mm])
        self.node("Add", f"{p}/add_bias", [mm, self.const(f"{p}/bias", bias)], [y])

    def act_site(self, site: Site, x: gs.Variable, y: gs.Variable) -> None:
        p = site.name
        rot = self.hadamard(p, x, site.n, site.m, site.axis)
        # FP activations: the key's shift is never added back (softmax ignores it), so it is simply not taken
        d = rot if self.fp_activations else self.qdq(p, rot, site.scale, site.shift, site.qmin, site.qmax)
        self.node("Identity", f"{p}/out", [d], [y])  # removed by remove_identities


def int4_site(site: Site) -> bool:
    """A Linear whose weight codes fit INT4 (at most 4 bits)."""
    return site.kind == "linear" and int(site.extra.get("w_bits", 8)) <= 4


def replace_markers(graph: gs.Graph, sites: list[Site], int4_block: int | None = None,
                    fp_activations: bool = False) -> Builder:
    """Replace every ``compsrt.site::Site`` marker by its subgraph (matmul-variant Hadamards).

    ``int4_block`` (see :meth:`Builder.weight`) applies to the Linears of at most 4-bit weights; None: INT8 for all.
    ``fp_activations``: weight-only, the activation quantizers are left out (see :class:`Builder`).
    """
    by_index = {s.index: s for s in sites}
    b = Builder(graph, fp_activations)
    b._names.update(n.name for n in graph.nodes)
    b._names.update(graph.tensors().keys())
    markers = [n for n in graph.nodes if n.op == "Site" and n.domain == SITE_DOMAIN]
    for node in markers:
        site = by_index[int(node.attrs["site"])]
        x, y = node.inputs[0], node.outputs[0]
        node.inputs.clear()
        node.outputs.clear()
        if site.kind == "linear":
            b.linear_site(site, x, y, int4_block)
        else:
            b.act_site(site, x, y)
    graph.cleanup()
    if any(n.op == "Site" for n in graph.nodes):
        raise CompsrtError("internal: site markers left in the graph after surgery")
    return b


def remove_identities(graph: gs.Graph) -> None:
    """Bypass Identity nodes (the legacy exporter emits them for shared weights)."""
    outputs = set(id(t) for t in graph.outputs)
    for node in [n for n in graph.nodes if n.op == "Identity"]:
        src, dst = node.inputs[0], node.outputs[0]
        if id(dst) in outputs:
            continue
        replace_tensor(dst, src)
        node.outputs.clear()
    graph.cleanup()


def _swap_last(shape: list) -> tuple[list, list]:
    """(perm, shape) of a Transpose of the last two axes."""
    perm = list(range(len(shape) - 2)) + [len(shape) - 1, len(shape) - 2]
    return perm, [shape[i] for i in perm]


def _transpose(graph: gs.Graph, x: gs.Variable, y: gs.Variable | None, name: str) -> gs.Variable:
    """Append ``y = Transpose(x)`` of the last two axes (``y`` None: a new tensor with the swapped shape)."""
    if x.shape is None:
        raise CompsrtError(f"internal: unknown shape around {name}")
    perm, shape = _swap_last(list(x.shape))
    y = y if y is not None else gs.Variable(f"{name}_out", dtype=x.dtype, shape=shape)
    graph.nodes.append(gs.Node("Transpose", name=name, attrs={"perm": perm}, inputs=[x], outputs=[y]))
    return y


def to_plugin(graph: gs.Graph, records: list[HadamardRecord], quants: list[QuantRecord] | None = None) -> int:
    """Swap the Hadamard MatMuls for ``HadamardTransform`` plugin nodes (shapes must be known).

    With ``quants`` (the fused-quant variant), every quantizer fed by a Hadamard is fused into its own plugin node
    (``quantize=1``) whose INT8 output replaces the QuantizeLinear's; the Sub/Clip/Q chain and the MatMul go.
    """
    tensors = graph.tensors()
    by_source: dict[str, list[QuantRecord]] = {}
    for qr in quants or []:
        by_source.setdefault(qr.source, []).append(qr)
    count = 0
    for rec in records:
        node = rec.node
        y = node.outputs[0]
        fused = by_source.get(y.name, [])
        if fused and len(fused) != len(y.outputs):
            raise CompsrtError(f"internal: {node.name} feeds something besides its quantizers; cannot fuse")
        x = node.inputs[0] if rec.axis == "last" else node.inputs[1]
        if fused:
            node.outputs.clear()  # the MatMul and the Sub/Clip/Q chains are dropped by cleanup
            xin = x if rec.axis == "last" else _transpose(graph, x, None, f"{node.name}/transpose_in")
            for i, qr in enumerate(fused):
                codes = tensors[qr.codes]
                attrs = onnx_node_attributes(rec.n, rec.m, quantize=True, shift=qr.shift, scale=qr.scale,
                                             qmin=qr.qmin, qmax=qr.qmax)
                name = f"{node.name}/fused_quant{i}"
                for producer in list(codes.inputs):
                    producer.outputs.clear()
                if rec.axis == "last":
                    graph.nodes.append(gs.Node(PLUGIN_OP, name=name, domain=PLUGIN_DOMAIN, attrs=attrs,
                                               inputs=[xin], outputs=[codes]))
                else:  # codes of v^T H; dequantize them (per-tensor scale), then transpose back
                    ct = gs.Variable(f"{name}/codes_t", dtype=np.int8, shape=_swap_last(list(codes.shape))[1])
                    graph.nodes.append(gs.Node(PLUGIN_OP, name=name, domain=PLUGIN_DOMAIN, attrs=attrs,
                                               inputs=[xin], outputs=[ct]))
                    for dq in list(codes.outputs):
                        d = dq.outputs[0]
                        dt = gs.Variable(f"{dq.name}/out_t", dtype=d.dtype, shape=list(ct.shape))
                        dq.inputs[0], dq.outputs[0] = ct, dt
                        _transpose(graph, dt, d, f"{dq.name}/transpose")
                count += 1
            continue
        attrs = onnx_node_attributes(rec.n, rec.m)
        node.op, node.domain, node.attrs = PLUGIN_OP, PLUGIN_DOMAIN, attrs
        node.inputs.clear()
        if rec.axis == "last":
            node.inputs.append(x)
        else:  # H @ v along the token axis = (v^T H)^T (H symmetric)
            node.inputs.append(_transpose(graph, x, None, f"{node.name}/transpose_in"))
            if y.shape is None:
                raise CompsrtError(f"internal: unknown shape around {node.name}")
            yt = gs.Variable(f"{node.name}/out_t", dtype=y.dtype, shape=_swap_last(list(y.shape))[1])
            _transpose(graph, yt, y, f"{node.name}/transpose_out")
            node.outputs.clear()
            node.outputs.append(yt)
        count += 1
    graph.cleanup().toposort()
    return count


OUTPUT_DTYPE_OPSET = 21  # QuantizeLinear's output_dtype attribute


def int8_by_attribute(model: onnx.ModelProto) -> int:
    """At opset >= 21, write each activation quantizer as ``Q(x, s, output_dtype=INT8) -> DQ(q, s)``.

    Same values as the zero-point-0 form (an omitted zero-point is 0; ``output_dtype`` keeps the INT8 container),
    but ONNX Runtime's optimizers (EXTENDED and ALL) reject that form: QDQPropagationTransformer copies a
    DequantizeLinear forward through Transpose/Reshape as a new Q/DQ pair whose Q carries ``output_dtype=INT8``,
    then QDQS8ToU8Transformer turns the pair's zero-point into UINT8 and leaves the attribute, so the session
    fails type inference. That transformer only rewrites Q/DQ pairs that have a zero-point input, so this form
    loads at every level (``tests/test_conformance.py`` keeps the reduced case). Weight DequantizeLinears keep
    their zero-points (INT4/INT8 zeros). Returns how many quantizers changed.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < OUTPUT_DTYPE_OPSET:
        return 0
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def zero_int8(name: str) -> bool:
        t = inits.get(name)
        return (t is not None and t.data_type == onnx.TensorProto.INT8 and int(np.prod(t.dims)) == 1
                and not onnx.numpy_helper.to_array(t).any())

    changed = 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        if q.input[0] in inits or len(q.input) < 3 or not zero_int8(q.input[2]):
            continue
        dqs = consumers.get(q.output[0], [])
        if any(d.op_type != "DequantizeLinear" or d.input[1] != q.input[1] or d.input[2:] != q.input[2:] for d in dqs):
            raise CompsrtError(f"internal: {q.name} feeds something besides its DequantizeLinear(s, 0)")
        del q.input[2]
        q.attribute.append(onnx.helper.make_attribute("output_dtype", onnx.TensorProto.INT8))
        for d in dqs:
            del d.input[2]
        changed += 1
    used = {name for n in g.node for name in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return changed


_NO_NUMPY = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.BFLOAT16}


def _array(c: gs.Constant) -> np.ndarray | None:
    """The constant's values, or None for a dtype NumPy lacks (loading an INT4 constant would widen it for good)."""
    v = c._values
    if not isinstance(v, np.ndarray) and getattr(v, "tensor", None) is not None and v.tensor.data_type in _NO_NUMPY:
        return None
    return c.values


def _constant_key(c: gs.Constant) -> tuple:
    """Identity of a constant's contents: dtype, shape and bytes (INT4 constants by their TensorProto)."""
    v = _array(c)
    if v is not None:
        return (v.dtype.str, v.shape, v.tobytes())
    t = c._values.tensor
    body = onnx.TensorProto()
    body.CopyFrom(t)
    body.name = ""
    return (f"onnx{t.data_type}", tuple(t.dims), body.SerializeToString())


def replace_tensor(old: gs.Tensor, new: gs.Tensor) -> None:
    """Make every consumer of ``old`` read ``new`` instead."""
    for consumer in list(old.outputs):
        for i, t in enumerate(consumer.inputs):
            if t is old:
                consumer.inputs[i] = new


def dedupe_constants(graph: gs.Graph) -> int:
    """Make every consumer of identical constants (dtype, shape, bytes) use the first one; returns how many went."""
    first: dict[tuple, gs.Constant] = {}
    dropped = 0
    for c in [t for t in graph.tensors().values() if isinstance(t, gs.Constant)]:
        key = _constant_key(c)
        keep = first.setdefault(key, c)
        if keep is not c:
            replace_tensor(c, keep)
            dropped += 1
    graph.cleanup()
    return dropped


def compact_constants(graph: gs.Graph, records: list[TraceConstant]) -> None:
    """Rebuild the traced position biases and shifted-window masks from their small sources, then dedupe.

    position bias: ``Gather(table (225, heads), index (1, n, n) int32) -> Transpose`` (1, heads, n, n), bit-exact;
    mask: ``Mul(Min(Abs(r_j - r_i), 1), -100)`` from the region ids r (nW, n), one subgraph for all blocks of the
    same shift. Its zeros are -0.0 where the traced mask has +0.0: x + (-0.0) == x for every x, so the
    masked logits are the same bits. Constant-only subgraphs: ONNX Runtime and TensorRT fold them when they load.
    """
    graph.cleanup()  # drops the Constant nodes that folding left behind, so their values are gs.Constants
    by_key: dict[tuple, list[gs.Constant]] = {}
    for c in graph.tensors().values():
        if isinstance(c, gs.Constant) and (v := _array(c)) is not None and v.size > 1:
            by_key.setdefault(_constant_key(c), []).append(c)
    made: dict[tuple, gs.Variable] = {}

    def node(op, name, inputs, out_name, attrs=None):
        out = gs.Variable(out_name, dtype=np.float32)
        graph.nodes.append(gs.Node(op, name=name, attrs=attrs or {}, inputs=inputs, outputs=[out]))
        return out

    for rec in records:
        v = np.ascontiguousarray(rec.value)
        key = (v.dtype.str, v.shape, v.tobytes())
        targets = by_key.get(key, [])
        if not targets and key not in made:
            raise CompsrtError(f"internal: the traced {rec.kind} constant of {rec.name} is not in the graph")
        if key not in made:
            p = f"{rec.name}/{rec.kind}"
            if rec.kind == "position_bias":
                if not np.array_equal(rec.table[rec.index].transpose(2, 0, 1)[None], v):
                    raise CompsrtError(f"internal: {rec.name}: table[index] is not the traced position bias")
                g = node("Gather", f"{p}/gather", [gs.Constant(f"{rec.name}.relative_position_bias_table", rec.table),
                                                   gs.Constant(f"{p}/index", rec.index[None].astype(np.int32))],
                         f"{p}/gathered", {"axis": 0})
                made[key] = node("Transpose", f"{p}/transpose", [g], p, {"perm": [0, 3, 1, 2]})
            elif rec.kind == "shift_mask":
                r = rec.table.astype(np.float32)
                diff = r[:, None, :] - r[:, :, None]
                if not np.array_equal(np.minimum(np.abs(diff), 1)[:, None][None] * np.float32(-100), v):
                    raise CompsrtError(f"internal: {rec.name}: region ids do not give the traced mask")
                cols = gs.Constant(f"{p}/regions", r.reshape(1, r.shape[0], 1, 1, r.shape[1]))
                rows = node("Transpose", f"{p}/regions_t", [cols], f"{p}/regions_t_out", {"perm": [0, 1, 2, 4, 3]})
                d = node("Sub", f"{p}/diff", [cols, rows], f"{p}/diff_out")
                a = node("Abs", f"{p}/abs", [d], f"{p}/abs_out")
                one = gs.Constant(f"{p}/one", np.array(1.0, np.float32))
                m = node("Min", f"{p}/min", [a, one], f"{p}/min_out")
                made[key] = node("Mul", f"{p}/mul", [m, gs.Constant(f"{p}/minus100", np.array(-100.0, np.float32))], p)
            else:
                raise ValueError(rec.kind)
        for c in targets:
            replace_tensor(c, made[key])
        by_key.pop(key, None)
    graph.cleanup().toposort()
    dedupe_constants(graph)

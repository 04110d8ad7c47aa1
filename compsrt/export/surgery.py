"""Graph surgery with onnx-graphsurgeon: site markers -> Hadamard + Q/DQ subgraphs; cleanup.

Subgraph of a quantized Linear (activation of real width m, padded width n, ``out`` outputs)::

    x (.., m) -> Hadamard(n, width=m) -> [Sub shift] -> Clip(qmin*s, qmax*s) -> QuantizeLinear(s, 0)
      -> DequantizeLinear(s, 0) -> MatMul <- DequantizeLinear(codes^T int8 (n, out), s_w (out,), axis=1)
      -> Add(folded bias)

An attention operand is the same up to the DequantizeLinear (q, k, probabilities rotated along their
last axis; v rotated along the token axis). Zero-points are always 0 (TensorRT's explicit
quantization is symmetric); the b-bit range is enforced by the Clip (QuantizeLinear itself only
saturates to the INT8 container); the asymmetric activation offset ("shift") is subtracted before
quantizing and its contribution is folded into the bias of the consuming Linear.

``hadamard="matmul"`` writes each Hadamard as a MatMul by the constant ``H_n[:m]`` (standard ops);
``hadamard="plugin"`` writes a ``HadamardTransform`` node for the TensorRT plugin of
:mod:`compsrt.plugins` (last axis only: the token-axis rotation of v becomes Transpose, Hadamard,
Transpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import CompsrtError
from ..hadamard import PLUGIN_NAME, PLUGIN_NAMESPACE, hadamard_matrix, onnx_node_attributes
from ..sites import Site
from .graph import SITE_DOMAIN

PLUGIN_OP, PLUGIN_DOMAIN = PLUGIN_NAME, PLUGIN_NAMESPACE  # the plugin's registry name is the ONNX op
HADAMARD_VARIANTS = ("plugin", "matmul")


@dataclass
class HadamardRecord:
    node: gs.Node  # the MatMul written by the matmul variant
    n: int
    m: int
    axis: str


class Builder:
    """Adds named subgraphs to a gs.Graph."""

    def __init__(self, graph: gs.Graph):
        self.graph = graph
        self.hadamards: list[HadamardRecord] = []
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
        proto = onnx.helper.make_tensor(name, onnx.TensorProto.INT4, values.shape, values.astype(np.int8).reshape(-1).tolist())
        return gs.Constant(name, values=LazyValues(proto))

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
        d = self.var(f"{prefix}/dq")
        self.node("DequantizeLinear", f"{prefix}/dequantize", [q, sc, zc], [d])
        return d

    def weight(self, prefix: str, codes: np.ndarray, w_scale: np.ndarray, int4_block: int | None = None) -> gs.Variable:
        """DequantizeLinear of the transposed weight codes (n, out): per-channel on axis 1, or INT4 blocks on axis 0."""
        wt = np.ascontiguousarray(codes.T)
        out = wt.shape[1]
        d = self.var(f"{prefix}/weight_dq")
        if int4_block:
            k = wt.shape[0]
            block = min(int4_block, k)
            if k % block:
                raise CompsrtError(f"{prefix}: K={k} is not a multiple of the INT4 block {block}")
            if wt.min() < -8 or wt.max() > 7:
                raise CompsrtError(f"{prefix}: weight codes outside [-8, 7] cannot be stored as INT4")
            scale = np.repeat(w_scale.reshape(1, out).astype(np.float32), k // block, axis=0)
            zp = np.zeros(scale.shape, dtype=np.int8)
            wc = self.int4_const(f"{prefix}/weight_int4", wt)
            zc = self.int4_const(f"{prefix}/weight_zero_point", zp)
            self.node("DequantizeLinear", f"{prefix}/weight_dequantize",
                      [wc, self.const(f"{prefix}/weight_scale", scale), zc], [d], {"axis": 0, "block_size": block})
        else:
            self.node("DequantizeLinear", f"{prefix}/weight_dequantize",
                      [self.const(f"{prefix}/weight_int8", wt.astype(np.int8)),
                       self.const(f"{prefix}/weight_scale", w_scale.astype(np.float32).reshape(out)),
                       self.const(f"{prefix}/weight_zero_point", np.zeros(out, np.int8))], [d], {"axis": 1})
        return d

    # -- sites ---------------------------------------------------------------------------------
    def linear_site(self, site: Site, x: gs.Variable, y: gs.Variable, int4_block: int | None = None) -> None:
        p = site.name
        rot = self.hadamard(p, x, site.n, site.m, "last")
        a = self.qdq(f"{p}/act", rot, site.scale, site.shift, site.qmin, site.qmax)
        use_int4 = int4_block if site.extra.get("w_bits") == 4 else None
        w = self.weight(p, site.codes, site.w_scale, use_int4)
        mm = self.var(f"{p}/matmul_out")
        self.node("MatMul", f"{p}/matmul", [a, w], [mm])
        self.node("Add", f"{p}/add_bias", [mm, self.const(f"{p}/bias", site.bias)], [y])

    def act_site(self, site: Site, x: gs.Variable, y: gs.Variable) -> None:
        p = site.name
        rot = self.hadamard(p, x, site.n, site.m, site.axis)
        d = self.qdq(p, rot, site.scale, site.shift, site.qmin, site.qmax)
        self.node("Identity", f"{p}/out", [d], [y])  # removed by remove_identities


def replace_markers(graph: gs.Graph, sites: list[Site], int4_block: int | None = None) -> Builder:
    """Replace every ``compsrt.site::Site`` marker by its subgraph (matmul-variant Hadamards)."""
    by_index = {s.index: s for s in sites}
    b = Builder(graph)
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
        for consumer in list(dst.outputs):
            for i, t in enumerate(consumer.inputs):
                if t is dst:
                    consumer.inputs[i] = src
        node.outputs.clear()
    graph.cleanup()


def to_plugin(graph: gs.Graph, records: list[HadamardRecord]) -> int:
    """Swap the Hadamard MatMuls for ``HadamardTransform`` plugin nodes (shapes must be known)."""
    count = 0
    for rec in records:
        node = rec.node
        attrs = onnx_node_attributes(rec.n, rec.m)
        if rec.axis == "last":
            x, y = node.inputs[0], node.outputs[0]
            node.op, node.domain, node.attrs = PLUGIN_OP, PLUGIN_DOMAIN, attrs
            node.inputs.clear()
            node.inputs.append(x)
        else:  # H @ v along the token axis = (v^T H)^T (H symmetric)
            x, y = node.inputs[1], node.outputs[0]
            if x.shape is None or y.shape is None:
                raise CompsrtError(f"internal: unknown shape around {node.name}")
            rank = len(x.shape)
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            xt = gs.Variable(f"{node.name}/in_t", dtype=x.dtype, shape=[x.shape[i] for i in perm])
            yt = gs.Variable(f"{node.name}/out_t", dtype=y.dtype, shape=[y.shape[i] for i in perm])
            graph.nodes.append(gs.Node("Transpose", name=f"{node.name}/transpose_in", attrs={"perm": perm},
                                       inputs=[x], outputs=[xt]))
            graph.nodes.append(gs.Node("Transpose", name=f"{node.name}/transpose_out", attrs={"perm": perm},
                                       inputs=[yt], outputs=[y]))
            node.op, node.domain, node.attrs = PLUGIN_OP, PLUGIN_DOMAIN, attrs
            node.inputs.clear()
            node.inputs.append(xt)
            node.outputs.clear()
            node.outputs.append(yt)
        count += 1
    graph.cleanup().toposort()
    return count

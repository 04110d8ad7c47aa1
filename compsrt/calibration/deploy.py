"""Deploy-mode contract between calibration and the ONNX/TensorRT export.

The deploy-mode PyTorch model computes, operation for operation, what the exported graph must compute.
:func:`deploy_sites` lists every quantized site with plain tensors, so the export needs no knowledge of
the calibration classes. All tensors are float32 on CPU unless stated; codes are int8.

Quantize/dequantize (every site)
--------------------------------
``codes = clamp(round_half_to_even(t / scale), qmin, qmax)``, ``value = codes * scale`` - ONNX
QuantizeLinear / DequantizeLinear with zero-point 0 on INT8 containers (the b-bit range
``[qmin, qmax] = [-2**(b-1), 2**(b-1) - 1]`` lies inside int8). The simulation divides by the scale
(``torch.round(t / s)``), never multiplies by a reciprocal, so ONNX Runtime reproduces it code for code.
Scales are per tensor (a 0-d tensor) except weight scales, which are per output channel, shape (out,)
(QuantizeLinear ``axis=0`` on the (out, n) weight).

Quantized Linear sites (``kind == "linear"``; per Swin block: q, k, v, proj, fc1, fc2)
-------------------------------------------------------------------------------------
The fused ``attn.qkv`` Linear (60 -> 180) is split into three 60 -> 60 Linears ``attn.qkv.q``, ``.k``,
``.v`` whose outputs are concatenated in the order q, k, v (so the rest of WindowAttention is unchanged).
Let ``m`` be the real input width (60, or 120 for fc2), ``n`` the padded width (64 / 128), ``H_n`` the
orthonormal Sylvester Hadamard matrix (entries +-1/sqrt(n), symmetric, H_n @ H_n = I)::

    x~ = concat(x, zeros(..., n - m)) @ H_n                     # HadamardTransform along the last axis
    y  = DQ(Q(x~ - act_shift; act_scale)) @ DQ(W~_q; weight_scale)^T + bias_folded

with ``W~_q`` = ``weight_codes`` (int8, (out, n)); ``bias_folded = bias + act_shift * sum_k DQ(W~_q)[o, k]``
(already computed: use the tensor given, do not recompute). ``act_shift`` is a 0-d tensor (the same
value on every lane of the rotated input). No inverse rotation and no crop: the matmul runs in the
rotated, padded domain, so K = n. Pruned weights have code 0 (``mask`` False); for ``prune == "2:4"`` the
mask keeps 2 of every 4 consecutive K entries of each output row (TensorRT's structured sparsity).
q, k and v of one block share the same ``x~`` (one rotation feeds three Q/DQ + MatMul branches, each
with its own scale and shift).

Attention operand sites (``kind == "operand"``; roles q, k, v, attn)
-------------------------------------------------------------------
In WindowAttention: ``q = Linear_q(x) * head_dim**-0.5`` (the scale multiplies *before* the quantizer),
``k = Linear_k(x)``, ``v = Linear_v(x)``, each reshaped to (B*nW, heads, 64 tokens, head_dim = 10).

* ``q``: ``q~ = concat(q, 0) @ H_16`` along head_dim (10 -> 16), symmetric Q/DQ (``shift`` = 0).
* ``k``: ``k~ = concat(k, 0) @ H_16``, then ``DQ(Q(k~ - shift))`` where ``shift`` (0-d) is **subtracted and
  not added back**: ``q~ . shift`` is the same for every key of a query row, and softmax is invariant to
  a per-row constant. logits = DQ(q~) @ DQ(k~ - shift)^T, then + relative position bias (+ shift mask),
  softmax (FP32) -> P (..., 64 queries, 64 keys).
* ``attn``: ``P~ = P @ H_64`` along the key axis (the last axis), symmetric Q/DQ.
* ``v``: ``v~ = H_64 @ v`` along the **token** axis (axis -2, 64 tokens of an 8x8 window), not head_dim;
  symmetric Q/DQ. Then ``out = DQ(P~) @ DQ(v~)`` (= P v, the rotations cancel), shape (..., 64, 10), which
  continues exactly as in FP (transpose, reshape, proj).

Each operand site gives ``scale`` (0-d), ``shift`` (0-d; nonzero only for k), ``qmin``, ``qmax``,
``axis`` (-1 or -2: the rotated axis), ``real`` and ``padded`` widths of that axis.

Paper mode is a simulation only (asymmetric, rotate back and crop); ``deploy_sites`` refuses it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CompsrtError
from .qmodel import OperandQuant, QLinear

LINEAR_ROLES = {"attn.qkv.q": "q", "attn.qkv.k": "k", "attn.qkv.v": "v", "attn.proj": "proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}


def _role(name: str) -> str:
    for suffix, role in LINEAR_ROLES.items():
        if name.endswith(suffix):
            return role
    raise KeyError(name)


@torch.no_grad()
def deploy_sites(model: nn.Module) -> list[dict]:
    """Every quantized site of a deploy-mode model, in module order, as plain tensors (see module doc).

    Freezes the model (stores the weight codes) if it is not frozen yet.

    Linear site keys: kind, name (module path, e.g. ``layers.0.residual_group.blocks.0.attn.qkv.q``),
    block (path of the Swin block), role, bits, in_features (m), padded (n), out_features,
    weight_codes (int8 (out, n)), weight_scale ((out,)), mask (bool (out, n)), act_scale (0-d),
    act_shift (0-d), qmin, qmax, bias (FP bias (out,)), bias_folded ((out,)).

    Operand site keys: kind, name (e.g. ``....attn.quant_k``), block, role (q|k|v|attn), bits,
    axis (-1 or -2), real, padded, scale (0-d), shift (0-d), qmin, qmax, add_back_shift (always False).
    """
    cfg = getattr(model, "quant_config", None)
    if cfg is None or cfg.mode != "deploy":
        raise CompsrtError("deploy_sites needs a deploy-mode compressed model (paper mode is a simulation only)")
    sites = []
    for name, m in model.named_modules():
        if isinstance(m, QLinear):
            if not m.frozen:
                m.freeze_()
            w = m.qweight()
            sites.append(dict(
                kind="linear", name=name, block=name.rsplit(".attn", 1)[0].rsplit(".mlp", 1)[0], role=_role(name),
                bits=m.wq.bits, in_features=m.in_features, padded=m.n, out_features=m.out_features,
                weight_codes=m.codes.detach().cpu().clone(), weight_scale=m.wq.step().detach().reshape(-1).cpu().clone(),
                mask=m.mask.detach().cpu().clone(), act_scale=m.aq.step().detach().cpu().clone(),
                act_shift=m.aq.shift().detach().cpu().clone(), qmin=m.aq.qmin, qmax=m.aq.qmax,
                bias=m.bias.detach().cpu().clone(), bias_folded=m.folded_bias(w).detach().cpu().clone(),
            ))
        elif isinstance(m, OperandQuant):
            rotated_axis = -2 if m.role == "v" else -1
            real = 64 if m.role in ("attn", "v") else model.config.embed_dim // _heads(model, name)
            sites.append(dict(
                kind="operand", name=name, block=name.rsplit(".attn", 1)[0], role=m.role, bits=m.fq.bits,
                axis=rotated_axis, real=real, padded=1 << (real - 1).bit_length(),
                scale=m.fq.step().detach().cpu().clone(), shift=m.fq.shift().detach().cpu().clone(),
                qmin=m.fq.qmin, qmax=m.fq.qmax, add_back_shift=False,
            ))
    return sites


def _heads(model: nn.Module, name: str) -> int:
    attn = model.get_submodule(name.rsplit(".", 1)[0])
    return attn.num_heads

"""The one site contract between calibration and export (and the parity check).

The deploy-mode PyTorch model computes, operation for operation, what the exported graph must compute.
Every quantized module of the calibration package answers ``deploy_site(name)`` with a :class:`Site`
(plain numbers and numpy arrays, plus the module itself to run and its activation quantizer to observe);
:func:`collect_sites` lists them in module order. The export and the runtime read only this module, never
the calibration classes. Arrays are float32 unless stated; codes are int8.

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

with ``W~_q`` = ``codes`` (int8, (out, n)), ``weight_scale`` = ``w_scale`` and ``bias_folded`` = ``bias``
(``= bias_fp + shift * sum_k DQ(W~_q)[o, k]``, already computed: use the array given, do not recompute);
``act_shift`` = ``shift`` / ``act_scale`` = ``scale`` are scalars (the same on every lane of the rotated input). No inverse rotation and no crop: the matmul runs in the
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

Each operand site gives ``scale``, ``shift`` (nonzero only for k), ``qmin``, ``qmax`` and ``axis`` (``last``
or ``tokens``: the rotated axis); the export fills in the real and padded widths ``m`` / ``n`` while tracing.

Paper mode is a simulation only (asymmetric, rotate back and crop); :func:`collect_sites` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CompsrtError


@dataclass
class Site:
    """One quantized operand of the deploy-mode model, in export terms.

    kind ``linear``: y = DQ(Q(clip(H(x) - shift))) @ DQ(codes)^T + bias; ``act``: the rotated,
    quantized operand DQ(Q(clip(H(t) - shift))) (``axis`` ``last`` or ``tokens``).
    ``module`` computes the site (the export runs it while tracing); ``quantizer`` is its activation
    quantizer (``step()``, ``shift()``, ``qmin``, ``qmax``), which the parity check observes and forces.
    """

    index: int
    name: str
    kind: str  # "linear" | "act"
    module: Any = field(repr=False)
    quantizer: Any = field(default=None, repr=False)
    mode: str = "deploy"
    block: str = ""  # path of the Swin block
    role: str = ""  # linear: q, k, v, proj, fc1, fc2; act: q, k, v, attn
    axis: str = "last"  # act: "last" (feature / key axis) or "tokens" (second-to-last)
    m: int = 0  # real width
    n: int = 0  # padded (power of two) width
    scale: float = 1.0
    shift: float = 0.0
    qmin: int = -128
    qmax: int = 127
    bits: int = 8
    # linear only
    codes: np.ndarray | None = None  # int8 (out, n), rotated weight codes (0 where pruned)
    w_scale: np.ndarray | None = None  # float32 (out,)
    bias: np.ndarray | None = None  # float32 (out,), shift folded in
    bias_fp: np.ndarray | None = None  # float32 (out,), the FP bias
    mask: np.ndarray | None = None  # bool (out, n), kept weights
    out_features: int = 0
    extra: dict = field(default_factory=dict)


def is_site_module(module) -> bool:
    return callable(getattr(module, "deploy_site", None))


def is_quantized(model) -> bool:
    """True when any module of ``model`` is a quantized site."""
    return any(is_site_module(m) for m in model.modules())


def collect_sites(model) -> list[Site]:
    """Every quantized site of a deploy-mode model, in module order (paper mode refused)."""
    sites = []
    for name, mod in model.named_modules():
        if not is_site_module(mod):
            continue
        if getattr(mod, "mode", "deploy") != "deploy":
            raise CompsrtError(f"{name} is a paper-mode quantizer; only deploy-mode checkpoints can be exported")
        site = mod.deploy_site(name)
        site.index = len(sites)
        sites.append(site)
    return sites


def site_quantizers(model) -> dict[str, Any]:
    """{site name: activation quantizer} of a deploy-mode model (module order)."""
    return {s.name: s.quantizer for s in collect_sites(model)}

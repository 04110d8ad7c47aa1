"""Internal precision of SwinIR-light's unquantized operations: which operation kinds run in BF16 / FP16.

A compressed engine quantizes the Linear inputs and weights; every other operation runs in the precision the
ONNX declares. :class:`InternalPrecision` is that declaration, one dtype per *operation kind* (``OP_KINDS``).
The export traces its ops (so the graph carries explicit Casts, which TensorRT's strongly typed networks
execute as written) and the accuracy scripts run the same ops in torch, so both compute the same thing.

Kinds kept in FP32 inside a reduced-precision graph (``KEEP_FP32``) were chosen by measurement on training
patches (``benchmarks/export/precision_kinds.py``; raw results in ``benchmarks/export/results/precision/``).
Quantized sites (Hadamard + Q/DQ + their MatMuls) always stay FP32: the Q/DQ form is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# conv: every 3x3 convolution (first, per residual group, after the body, upsampler);
# layernorm: every LayerNorm; linear: the unquantized Linears (MatMul + bias; FP checkpoints only);
# attention: q*scale, q @ k^T and probabilities @ v when their operands are not quantized;
# softmax: the softmax (its position-bias and shift-mask additions stay FP32, constant-derived);
# gelu: the MLP activation; residual: the residual sums (per block, per group, the long skip).
OP_KINDS = ("conv", "layernorm", "linear", "attention", "softmax", "gelu", "residual")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INTERNAL_PRECISIONS = tuple(DTYPES)
FP16_MAX = 65504.0
# Operation kinds left in FP32 inside a bf16 / fp16 graph (measured: benchmarks/export/precision_kinds.py).
KEEP_FP32: dict[str, frozenset[str]] = {
    "fp32": frozenset(OP_KINDS),
    "bf16": frozenset({"conv", "layernorm", "residual"}),
    "fp16": frozenset(),
}


def as_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype``; no op (so no Cast node in the trace) when it already is."""
    return x if x.dtype == dtype else x.to(dtype)


@dataclass(frozen=True)
class InternalPrecision:
    """The dtype of each operation kind: ``low`` kinds in ``name``'s dtype (bf16 / fp16), the rest FP32."""

    name: str = "fp32"
    low: frozenset[str] = frozenset()

    @classmethod
    def of(cls, name: str, low: frozenset[str] | set[str] | None = None) -> InternalPrecision:
        """The policy ``name`` with the measured FP32 kinds, or with exactly ``low`` reduced (measurements)."""
        if name not in DTYPES:
            raise ValueError(f"internal precision must be one of {INTERNAL_PRECISIONS}, got {name!r}")
        unknown = set(low or ()) - set(OP_KINDS)
        if unknown:
            raise ValueError(f"unknown operation kinds {sorted(unknown)}; kinds are {OP_KINDS}")
        low = frozenset(OP_KINDS) - KEEP_FP32[name] if low is None else frozenset(low)
        return cls(name, frozenset() if name == "fp32" else low)

    @property
    def reduced(self) -> torch.dtype:
        return DTYPES[self.name]

    def dtype(self, kind: str) -> torch.dtype:
        return self.reduced if kind in self.low else torch.float32

    def kept_fp32(self) -> list[str]:
        return [k for k in OP_KINDS if k not in self.low]

    # -- the operations, each in its kind's dtype (an FP32 policy adds no cast: the graph is today's) --
    def conv(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        d = self.dtype("conv")
        if d == torch.float32:
            return conv(as_dtype(x, d))
        return F.conv2d(as_dtype(x, d), conv.weight.to(d), None if conv.bias is None else conv.bias.to(d),
                        conv.stride, conv.padding, conv.dilation, conv.groups)

    def layer_norm(self, norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        d = self.dtype("layernorm")
        if d == torch.float32:
            return norm(as_dtype(x, d))
        return F.layer_norm(as_dtype(x, d), norm.normalized_shape, norm.weight.to(d), norm.bias.to(d), norm.eps)

    def linear(self, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        d = self.dtype("linear")
        if d == torch.float32:
            return linear(as_dtype(x, d))
        return F.linear(as_dtype(x, d), linear.weight.to(d), None if linear.bias is None else linear.bias.to(d))

    def gelu(self, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return act(as_dtype(x, self.dtype("gelu")))

    def softmax(self, x: torch.Tensor) -> torch.Tensor:
        return as_dtype(x, self.dtype("softmax")).softmax(dim=-1)

    def matmul(self, a: torch.Tensor, b: torch.Tensor, quantized: bool = False) -> torch.Tensor:
        """An attention product; FP32 when its operands come from quantizers (the Q/DQ form is unchanged)."""
        d = torch.float32 if quantized else self.dtype("attention")
        return as_dtype(a, d) @ as_dtype(b, d)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """A residual sum."""
        d = self.dtype("residual")
        return as_dtype(a, d) + as_dtype(b, d)

"""Tracing SwinIR-light (FP or CompSRT deploy mode) into an ONNX graph with *site markers*.

The model is traced through :class:`StaticSwinIR`, a static-shape forward for one tile that reuses
the model's own modules and performs the same floating-point operations in the same order as
``SwinIR.forward``: the batch stays dynamic (``-1`` in every Reshape), the tile is fixed, the
relative-position biases and shifted-window masks are precomputed constants, recorded as
:class:`TraceConstant` so that surgery can rebuild them from their small sources (the 15x15 tables, the
region ids) instead of storing one expanded copy per block.

Every quantized site of a deploy-mode model (any module that answers the site contract,
:mod:`compsrt.sites`) is traced as one marker node ``compsrt.site::Site(site=i)``; its real output is
computed with tracing switched off, so the rest of the trace is exact. The numbers each site needs
(scales, shifts, integer ranges, weight codes, folded biases) come with its :class:`~compsrt.sites.Site`
record, and :mod:`compsrt.export.surgery` replaces the markers by Hadamard + Q/DQ subgraphs.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..artifacts import INPUT_NAME, OUTPUT_NAME
from ..errors import CompsrtError
from ..models.precision import InternalPrecision, as_dtype
from ..sites import Site, collect_sites, is_quantized

SITE_DOMAIN = "compsrt.site"
_ACTIVE: dict[int, "Site"] = {}


@dataclass
class TraceConstant:
    """A large constant of the trace and the small tensors it derives from (rebuilt in the graph by surgery).

    ``position_bias`` (1, heads, n, n) = table[index] permuted, ``table`` the (2ws-1)^2 x heads parameter and
    ``index`` (n, n) int32; ``shift_mask`` (1, nW, 1, n, n) = -100 where the region ids of two tokens differ,
    ``table`` the region ids (nW, n).
    """

    kind: str  # "position_bias" | "shift_mask"
    name: str
    value: np.ndarray
    table: np.ndarray
    index: np.ndarray | None = None


class _SiteFn(torch.autograd.Function):
    """Runs the real site module (tracing paused) and traces one marker node in its place."""

    @staticmethod
    def forward(ctx, x, index: int):
        site = _ACTIVE[index]
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            y = site.module(x)
        finally:
            torch._C._set_tracing_state(state)
        if site.kind == "act":
            site.m = int(x.shape[-2] if site.axis == "tokens" else x.shape[-1])
            site.n = int(y.shape[-2] if site.axis == "tokens" else y.shape[-1])
        site.extra["out_shape"] = tuple(int(d) for d in y.shape)
        return y

    @staticmethod
    def symbolic(g, x, index: int):
        out = g.op(f"{SITE_DOMAIN}::Site", x, site_i=index)
        shape = _ACTIVE[index].extra.get("out_shape")
        if shape is not None:  # batch-like leading dim left symbolic; silences "shape inference missing"
            out.setType(x.type().with_dtype(torch.float32).with_sizes([None] + list(shape[1:])))
        return out


class StaticSwinIR(nn.Module):
    """Static-tile forward of a SwinIR(-light) model, numerically the same as ``SwinIR.forward``."""

    def __init__(self, model: nn.Module, tile: tuple[int, int], io_dtype: torch.dtype = torch.float32,
                 internal: InternalPrecision | None = None):
        super().__init__()
        self.internal = internal or InternalPrecision()  # the dtype of each unquantized op (casts in the trace)
        from ..models.swinir import SwinTransformerBlock

        self.model = model
        self.h, self.w = tile
        ws = model.window_size
        if self.h % ws or self.w % ws or self.h <= 0 or self.w <= 0:
            raise CompsrtError(f"--tile {self.h} {self.w}: both sides must be positive multiples of the window ({ws})")
        self.io_dtype = io_dtype
        self.sites: list[Site] = []
        self._site_of: dict[int, int] = {}  # id(module) -> site index
        self._consts: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.constants: list[TraceConstant] = []  # what surgery.compact_constants rebuilds from small tensors
        for name, blk in model.named_modules():
            if isinstance(blk, SwinTransformerBlock):
                with torch.no_grad():
                    pb = blk.attn.position_bias().unsqueeze(0).detach().clone()
                    self.constants.append(TraceConstant(
                        "position_bias", f"{name}.attn", pb.numpy(),
                        blk.attn.relative_position_bias_table.detach().float().numpy().copy(),
                        blk.attn.rel_index.numpy().astype(np.int32)))
                    mask = None
                    if blk.shift_size > 0:
                        from ..models.swinir import shifted_window_mask, shifted_window_regions

                        mask = shifted_window_mask(self.h, self.w, ws, blk.shift_size)
                        mask = mask.unsqueeze(1).unsqueeze(0).detach().clone()
                        regions = shifted_window_regions(self.h, self.w, ws, blk.shift_size)
                        self.constants.append(TraceConstant(
                            "shift_mask", f"shift{blk.shift_size}", mask.numpy(), regions.numpy().astype(np.float32)))
                self._consts[id(blk)] = (pb, mask)
        if is_quantized(model):
            self._collect_sites()

    # -- site records --------------------------------------------------------------------------
    def _collect_sites(self) -> None:
        self.sites = collect_sites(self.model)
        self._site_of = {id(s.module): s.index for s in self.sites}

    def _call(self, mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
        idx = self._site_of.get(id(mod))
        if idx is None:
            sub = getattr(mod, "q", None)
            if sub is not None and id(sub) in self._site_of:  # fused qkv split in three QLinears
                return torch.cat([self._call(mod.q, x), self._call(mod.k, x), self._call(mod.v, x)], -1)
            if isinstance(mod, nn.Linear):
                return self.internal.linear(mod, x)
            return mod(x)
        x = as_dtype(x, torch.float32)  # quantized sites (Hadamard + Q/DQ) stay FP32
        return _SiteFn.apply(x, idx) if torch.jit.is_tracing() else mod(x)  # eager: the torch reference

    # -- static forward ------------------------------------------------------------------------
    def _attention(self, attn: nn.Module, x: torch.Tensor, pb: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, c = attn.window_size * attn.window_size, attn.dim
        qkv = self._call(attn.qkv, x).reshape(-1, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * attn.scale, qkv[1], qkv[2]
        p, quantized = self.internal, id(attn.quant_q) in self._site_of
        a = p.matmul(self._call(attn.quant_q, q), self._call(attn.quant_k, k).transpose(-2, -1), quantized)
        a = as_dtype(a, torch.float32) + pb  # the position bias and the shift mask are added in FP32 (constant-derived)
        if mask is not None:
            nw = mask.shape[1]
            a = a.reshape(-1, nw, attn.num_heads, n, n) + mask
            a = a.reshape(-1, attn.num_heads, n, n)
        a = p.softmax(a)
        quantized = id(attn.quant_attn) in self._site_of
        y = p.matmul(self._call(attn.quant_attn, a), self._call(attn.quant_v, v), quantized)
        return self._call(attn.proj, y.transpose(1, 2).reshape(-1, n, c))

    def _block(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        h, w, ws, s = self.h, self.w, blk.window_size, blk.shift_size
        c = blk.norm1.normalized_shape[0]
        pb, mask = self._consts[id(blk)]
        p = self.internal
        shortcut = x
        x = p.layer_norm(blk.norm1, x).reshape(-1, h, w, c)
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        x = x.reshape(-1, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        x = self._attention(blk.attn, x, pb, mask)
        x = x.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        x = p.add(shortcut, x.reshape(-1, h * w, c))
        mlp = blk.mlp
        return p.add(x, self._call(mlp.fc2, p.gelu(mlp.act, self._call(mlp.fc1, p.layer_norm(blk.norm2, x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, h, w, p = self.model, self.h, self.w, self.internal
        if x.dtype != torch.float32:
            x = x.float()
        x = (x - m.mean) * m.img_range
        x = p.conv(m.conv_first, x)
        c = m.conv_first.out_channels
        f = p.layer_norm(m.patch_embed.norm, x.reshape(-1, c, h * w).transpose(1, 2))
        for layer in m.layers:
            y = f
            for blk in layer.residual_group.blocks:
                y = self._block(blk, y)
            y = p.conv(layer.conv, y.transpose(1, 2).reshape(-1, c, h, w))
            f = p.add(y.reshape(-1, c, h * w).transpose(1, 2), f)
        f = p.layer_norm(m.norm, f).transpose(1, 2).reshape(-1, c, h, w)
        x = p.add(p.conv(m.conv_after_body, f), x)
        x = m.upsample[1](p.conv(m.upsample[0], x))
        x = as_dtype(x, torch.float32) / m.img_range + m.mean
        return x if self.io_dtype == torch.float32 else x.to(self.io_dtype)


def trace_to_onnx(static: StaticSwinIR, batch: int | None, opset: int) -> "onnx.ModelProto":  # noqa: F821
    """Legacy (TorchScript) export of ``static`` with markers; ``batch=None`` means dynamic."""
    import onnx

    example = torch.rand(batch or 1, 3, static.h, static.w).to(static.io_dtype)
    dyn = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    buf = io.BytesIO()
    _ACTIVE.clear()
    _ACTIVE.update({s.index: s for s in static.sites})
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                static, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes=dyn, do_constant_folding=True,
                custom_opsets={SITE_DOMAIN: 1} if static.sites else None,
            )
    finally:
        _ACTIVE.clear()
    return onnx.load_from_string(buf.getvalue())

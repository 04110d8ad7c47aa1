"""Per-tensor fake quantizers as one Triton kernel forward and one backward (DQC on CUDA).

Eager, a quantizer is about seven element-wise kernels forward and more backward, and autograd keeps
several attention-sized FP32 tensors per quantizer; on the H200 the DQC step was bound by that traffic
(docs/calibration.md, "Why, and what to do next": 0.205 -> 0.128 s per deploy step, 0.332 -> 0.137
paper). Here the forward reads ``t`` and writes the value; the backward reads the incoming gradient and
``t``, writes the input gradient and per-program partial sums of the parameter gradients (summed by
torch afterwards, deterministic). Only ``t`` is saved.

The gradients are those of the eager formulas in :mod:`.quant` under autograd (straight-through round,
``torch.clamp`` passing gradient where the rounded value is inside ``[qmin, qmax]``,
``torch.maximum``/``torch.minimum`` splitting ties evenly); ``tests/test_calibration.py`` checks them
against the eager path in float64, with Triton's interpreter on the CPU and on a GPU. Per-channel
quantizers (deploy weights, small) stay eager.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK = 1024
RINT_MAGIC = tl.constexpr(12582912.0)  # 1.5 * 2**23


@triton.jit
def _rint(v):
    """Round half to even (torch.round) in IEEE FP32: exact for |v| < 2**22; larger |v| stay beyond any
    b-bit code range, which is all the callers need. Portable (GPU and Triton's CPU interpreter)."""
    return (v + RINT_MAGIC) - RINT_MAGIC


@triton.jit
def _codes(v, qlo, qhi):
    """Codes of ``v`` clamped to [qlo, qhi], and where the clamp passes the straight-through gradient."""
    r = _rint(v)
    return tl.minimum(tl.maximum(r, qlo), qhi), (r >= qlo) & (r <= qhi)


@triton.jit
def _deploy_fwd(t_ptr, y_ptr, s_ptr, shift_ptr, n, qmin, qmax, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    t = tl.load(t_ptr + offs, mask=m, other=0.0)
    s = tl.load(s_ptr)
    q, _ = _codes((t - tl.load(shift_ptr)) / s, qmin, qmax)
    tl.store(y_ptr + offs, q * s, mask=m)


@triton.jit
def _deploy_bwd(g_ptr, t_ptr, gt_ptr, part_ptr, s_ptr, shift_ptr, n, qmin, qmax, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(g_ptr + offs, mask=m, other=0.0)
    t = tl.load(t_ptr + offs, mask=m, other=0.0)
    s = tl.load(s_ptr)
    v = (t - tl.load(shift_ptr)) / s
    q, inside = _codes(v, qmin, qmax)
    tl.store(gt_ptr + offs, tl.where(inside, g, 0.0), mask=m)
    tl.store(part_ptr + pid, tl.sum(g * (q - tl.where(inside, v, 0.0)), axis=0))  # d/ds
    tl.store(part_ptr + tl.num_programs(0) + pid, -tl.sum(tl.where(inside, g, 0.0), axis=0))  # d/dshift


@triton.jit
def _paper_fwd(t_ptr, y_ptr, l_ptr, u_ptr, s_ptr, z_ptr, n, qlo, qhi, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    t = tl.load(t_ptr + offs, mask=m, other=0.0)
    s = tl.load(s_ptr)
    z = tl.load(z_ptr)
    c = tl.minimum(tl.maximum(t, tl.load(l_ptr)), tl.load(u_ptr))
    q, _ = _codes((c - z) / s, qlo, qhi)
    tl.store(y_ptr + offs, q * s + z, mask=m)


@triton.jit
def _paper_bwd(g_ptr, t_ptr, gt_ptr, part_ptr, l_ptr, u_ptr, s_ptr, z_ptr, n, qlo, qhi, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(g_ptr + offs, mask=m, other=0.0)
    t = tl.load(t_ptr + offs, mask=m, other=0.0)
    lo = tl.load(l_ptr)
    hi = tl.load(u_ptr)
    s = tl.load(s_ptr)
    a = tl.maximum(t, lo)
    w_t = tl.where(t > lo, 1.0, tl.where(t == lo, 0.5, 0.0))  # share of max(t, l)'s gradient going to t
    w_a = tl.where(a < hi, 1.0, tl.where(a == hi, 0.5, 0.0))  # share of min(a, u)'s gradient going to a
    v = (tl.minimum(a, hi) - tl.load(z_ptr)) / s
    q, inside = _codes(v, qlo, qhi)  # inside everywhere without a code clamp
    gin = tl.where(inside, g, 0.0)
    np_ = tl.num_programs(0)
    tl.store(gt_ptr + offs, gin * w_t * w_a, mask=m)
    tl.store(part_ptr + pid, tl.sum(gin * (1.0 - w_t) * w_a, axis=0))  # d/dl (through the clip)
    tl.store(part_ptr + np_ + pid, tl.sum(gin * (1.0 - w_a), axis=0))  # d/du
    tl.store(part_ptr + 2 * np_ + pid, tl.sum(g * (q - tl.where(inside, v, 0.0)), axis=0))  # d/ds
    # d/dz: z cancels under the straight-through round inside the code range, so only clamped codes count
    tl.store(part_ptr + 3 * np_ + pid, tl.sum(g - gin, axis=0))


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


class _DeployFQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, s, shift, qmin: int, qmax: int):
        t = t.contiguous()
        y = torch.empty_like(t)
        _deploy_fwd[_grid(t.numel())](t, y, s, shift, t.numel(), float(qmin), float(qmax), BLOCK=BLOCK)
        ctx.save_for_backward(t, s, shift)
        ctx.q = (float(qmin), float(qmax))
        return y

    @staticmethod
    def backward(ctx, g):
        t, s, shift = ctx.saved_tensors
        g = g.contiguous()
        (nprog,) = _grid(t.numel())
        gt = torch.empty_like(t)
        part = torch.empty(2, nprog, device=t.device, dtype=torch.float32)
        _deploy_bwd[(nprog,)](g, t, gt, part, s, shift, t.numel(), *ctx.q, BLOCK=BLOCK)
        gs, gshift = part.sum(1)
        return gt, gs.reshape(s.shape), gshift.reshape(shift.shape), None, None


class _PaperFQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, l, u, s, z, qlo: float, qhi: float):
        t = t.contiguous()
        y = torch.empty_like(t)
        _paper_fwd[_grid(t.numel())](t, y, l, u, s, z, t.numel(), qlo, qhi, BLOCK=BLOCK)
        ctx.save_for_backward(t, l, u, s, z)
        ctx.q = (qlo, qhi)
        return y

    @staticmethod
    def backward(ctx, g):
        t, l, u, s, z = ctx.saved_tensors
        g = g.contiguous()
        (nprog,) = _grid(t.numel())
        gt = torch.empty_like(t)
        part = torch.empty(4, nprog, device=t.device, dtype=torch.float32)
        _paper_bwd[(nprog,)](g, t, gt, part, l, u, s, z, t.numel(), *ctx.q, BLOCK=BLOCK)
        gl, gu, gs, gz = part.sum(1)
        return gt, gl.reshape(l.shape), gu.reshape(u.shape), gs.reshape(s.shape), gz.reshape(z.shape), None, None


def fused_fake_quant(fq, t: torch.Tensor) -> torch.Tensor:
    """What ``fq(t)`` computes (a per-tensor :class:`.quant.FakeQuant`), through the Triton kernels."""
    s = fq.step()
    if fq.kind == "paper":
        qlo, qhi = (0.0, float(fq.nlev)) if fq.clamp else (-math.inf, math.inf)
        return _PaperFQ.apply(t, fq.l, fq.u, s, fq.l + fq.beta, qlo, qhi)
    return _DeployFQ.apply(t, s, fq.shift(), fq.qmin, fq.qmax)

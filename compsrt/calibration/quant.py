"""Fake quantizers with the CompSRT scalar decomposition, and DOBI range initialisation.

Each quantizer owns four learnable tensors ``l, u, alpha, beta`` (scalars, or one per output channel
for per-channel weights); with ``nlev = 2**b - 1``:

* step     ``s = max((u - l) / nlev + alpha, S_MIN)``
* paper    (``kind="paper"``):  ``c = clip(t, l, u)``, ``q = round((c - z) / s)`` with ``z = l + beta``,
  value ``s*q + z``; codes are not clamped (the authors' simulation), so once ``alpha < 0`` shrinks the
  step they span more than ``nlev`` levels. ``clamp=True`` clamps them to ``[0, nlev]``: the same
  formulation held to b bits (a diagnostic; docs/calibration.md, "Paper mode: codes outgrow their bits").
* deploy, asymmetric (``kind="asym"``): ``shift = l + beta + s * 2**(b-1)``,
  ``codes = clamp(round((t - shift) / s), -2**(b-1), 2**(b-1) - 1)``, value ``codes * s`` (the shift is
  *not* added back: it is folded into the consumer; see :mod:`.deploy`). With ``alpha = beta = 0`` the
  codes are exactly the paper's codes minus ``2**(b-1)``.
* deploy, symmetric (``kind="sym"``): as ``asym`` with ``shift = 0`` (``beta`` frozen at 0).

``round`` is ``torch.round`` (half to even, as ONNX QuantizeLinear) with a straight-through gradient,
and the step divides (never multiplies by a reciprocal), so ONNX Runtime reproduces codes exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

S_MIN = 1e-8
DOBI_STEPS = 100
DOBI_DIV = 200


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def paper_fq(t, l, u, alpha, beta, nlev: int, codes_only: bool = False, clamp: bool = False):
    """The authors' quantizer in the (already rotated) domain: clip, asymmetric round, dequantize."""
    c = torch.minimum(torch.maximum(t, l), u)
    s = ((u - l) / nlev + alpha).clamp_min(S_MIN)
    z = l + beta
    q = round_ste((c - z) / s)
    if clamp:
        q = torch.clamp(q, 0, nlev)
    if codes_only:
        return q
    return q * s + z


def deploy_fq(t, s, shift, qmin: int, qmax: int, codes_only: bool = False):
    """ONNX QuantizeLinear/DequantizeLinear of ``t - shift`` with zero-point 0 (codes*s is returned)."""
    q = torch.clamp(round_ste((t - shift) / s), qmin, qmax)
    if codes_only:
        return q
    return q * s


def _levels(ls, us, kind: str, bits: int) -> torch.Tensor:
    """The 2**b levels a candidate range quantizes to (float64, shape (*ls.shape, 2**b)), from the same FP32
    step and shift as the quantizer (alpha = beta = 0). paper and asym: ``l + s*j``; sym: ``s*q``."""
    nlev = (1 << bits) - 1
    qmin, _ = signed_range(bits)
    s = ((us - ls) / nlev).clamp_min(S_MIN)
    if kind == "paper":
        base = ls.double()
    elif kind == "asym":
        base = (ls + s * (1 << (bits - 1))).double() + s.double() * qmin
    else:
        base = s.double() * qmin
    j = torch.arange(nlev + 1, device=ls.device, dtype=torch.float64)
    return base.unsqueeze(-1) + s.double().unsqueeze(-1) * j


def _sorted_rows(flat: torch.Tensor) -> torch.Tensor:
    if flat.device.type == "cpu":  # numpy's vectorised sort is ~20x faster than torch.sort on a CPU
        return torch.from_numpy(np.sort(flat.numpy(), axis=1))
    return flat.sort(dim=1).values


@torch.no_grad()
def dobi_errors(t: torch.Tensor, ls: torch.Tensor, us: torch.Tensor, kind: str, bits: int) -> torch.Tensor:
    """L2 quantization error of every candidate range, (K,) per tensor or (K, C) per channel (``ls`` of shape
    (K, C, 1)), without quantizing ``t`` K times: one sort of ``t`` (per row) and float64 prefix sums of
    ``t`` and ``t**2``; each candidate's error is, per level ``c`` and the run of sorted values that round
    to it (found by binary search at the midpoints between levels), ``sum t**2 - 2c sum t + n c**2``. Values
    beyond the outer midpoints go to the outer levels: the clip of paper mode, the code clamp of deploy mode.
    Equals :func:`dobi_errors_reference` up to rounding (a value exactly on a midpoint costs the same at
    either level); ``tests/test_dobi.py`` checks that both pick the same k."""
    per_ch = ls.ndim == 3
    flat = t.reshape(t.shape[0], -1) if per_ch else t.reshape(1, -1)
    rows, n = flat.shape
    x = _sorted_rows(flat.float().contiguous())
    lv = _levels(ls.reshape(ls.shape[0], -1), us.reshape(us.shape[0], -1), kind, bits).transpose(0, 1)  # (R, K, L)
    k, nl = lv.shape[1], lv.shape[2]
    mid = ((lv[..., 1:] + lv[..., :-1]) / 2).reshape(rows, -1).float()  # a value within an ulp of it costs the same either side
    cut = torch.searchsorted(x, mid).reshape(rows, k, nl - 1)  # per level, where the sorted values that round to it end
    ends = torch.full((rows, k, 1), n, dtype=cut.dtype, device=x.device)
    hi = torch.cat([cut, ends], 2)
    lo = torch.cat([torch.zeros_like(ends), cut], 2)
    x = x.double()  # float64 squares: FP32 ones would lose the few-ulp errors of fine grids to cancellation
    cs1 = F.pad(x.cumsum(1), (1, 0))  # prefix sums with a leading 0
    cs2 = F.pad(x.square_().cumsum(1), (1, 0))

    def run_sum(cs):
        c = cs.unsqueeze(1).expand(rows, k, n + 1)
        return c.gather(2, hi) - c.gather(2, lo)

    cnt = (hi - lo).double()
    err = (run_sum(cs2) - 2 * lv * run_sum(cs1) + cnt * lv.square()).sum(2)  # (R, K)
    return err.transpose(0, 1) if per_ch else err[0]


@torch.no_grad()
def dobi_errors_reference(t: torch.Tensor, ls: torch.Tensor, us: torch.Tensor, kind: str, bits: int) -> torch.Tensor:
    """The definition of :func:`dobi_errors`, by brute force: quantize ``t`` once per candidate (K passes;
    the tests' reference and the benchmark's "before")."""
    nlev = (1 << bits) - 1
    qmin, qmax = signed_range(bits)
    per_ch = ls.ndim == 3
    errs = []
    chunk = max(1, (1 << 26) // max(1, t.numel()))
    for i in range(0, ls.shape[0], chunk):
        l, u = ls[i : i + chunk], us[i : i + chunk]
        tt = t.unsqueeze(0)
        if not per_ch:
            l = l.reshape(-1, *([1] * t.ndim))
            u = u.reshape(-1, *([1] * t.ndim))
        z0 = torch.zeros_like(l)
        if kind == "paper":
            q = paper_fq(tt, l, u, z0, z0, nlev)
        else:
            s = ((u - l) / nlev).clamp_min(S_MIN)
            shift = z0 if kind == "sym" else l + s * (1 << (bits - 1))
            q = deploy_fq(tt, s, shift, qmin, qmax) + shift
        e = (q - tt).square()
        errs.append(e.flatten(2).sum(2) if per_ch else e.flatten(1).sum(1))
    return torch.cat(errs, 0)


@torch.no_grad()
def floor_steps_(fqs: list["FakeQuant"], floors: list[torch.Tensor]) -> None:
    """Raise each quantizer's alpha where its step fell below its floor (a projection after an optimizer
    step): a step at the ``S_MIN`` clamp has no gradient, so a channel that drifts there is lost for good.
    Foreach ops: a handful of kernels for all quantizers (it runs inside the CUDA-graph step)."""
    alphas = [fq.alpha for fq in fqs]
    raw = torch._foreach_sub([fq.u for fq in fqs], [fq.l for fq in fqs])
    torch._foreach_div_(raw, [float(fq.nlev) for fq in fqs])
    torch._foreach_add_(raw, alphas)
    gap = torch._foreach_sub(floors, raw)
    torch._foreach_clamp_min_(gap, 0.0)
    torch._foreach_add_(alphas, gap)


class FakeQuant(nn.Module):
    """One quantizer (per tensor, or per output channel when ``channels`` is given)."""

    def __init__(self, bits: int, kind: str, channels: int | None = None, clamp: bool = False):
        super().__init__()
        if kind not in ("paper", "asym", "sym"):
            raise ValueError(kind)
        if clamp and kind != "paper":
            raise ValueError("clamp applies to paper quantizers (deploy codes are always clamped)")
        self.clamp = clamp
        self.bits = int(bits)
        self.kind = kind
        self.nlev = (1 << self.bits) - 1
        self.qmin, self.qmax = signed_range(self.bits)
        shape = (channels, 1) if channels else ()
        self.l = nn.Parameter(torch.full(shape, -1.0))
        self.u = nn.Parameter(torch.full(shape, 1.0))
        self.alpha = nn.Parameter(torch.zeros(shape))
        self.beta = nn.Parameter(torch.zeros(shape), requires_grad=kind != "sym")
        self.observe = False  # True: pass FP through and initialise the range (DOBI) from what flows
        self.fused = False  # True (per-tensor, CUDA training): forward through the Triton kernels of .fused_quant

    # -- scalar decomposition -------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        return ((self.u - self.l) / self.nlev + self.alpha).clamp_min(S_MIN)

    def shift(self) -> torch.Tensor:
        if self.kind == "sym":
            return torch.zeros_like(self.l)
        s = self.step()
        return self.l + self.beta + s * (1 << (self.bits - 1))

    @torch.no_grad()
    def code_span(self) -> torch.Tensor:
        """Largest minus smallest code it can emit: 2**b - 1 in deploy mode (clamped); in paper mode that of
        inputs clipped to [l, u], which exceeds 2**b - 1 once alpha < 0 has shrunk the step."""
        if self.kind != "paper":
            return torch.full_like(self.l, float(self.qmax - self.qmin))
        lo, hi = self.codes(torch.stack([self.l, self.u]))  # the clip maps every input into [l, u]
        return hi - lo

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype in (torch.bfloat16, torch.float16):  # under autocast: the quantizer arithmetic stays FP32
            t = t.float()
        if self.observe:
            self.dobi_(t.detach())
            return t
        if self.fused:
            from .fused_quant import fused_fake_quant

            return fused_fake_quant(self, t)
        if self.kind == "paper":
            return paper_fq(t, self.l, self.u, self.alpha, self.beta, self.nlev, clamp=self.clamp)
        return deploy_fq(t, self.step(), self.shift(), self.qmin, self.qmax)

    def codes(self, t: torch.Tensor) -> torch.Tensor:
        """Integer codes (as float) of ``t``; for ``asym`` these are codes of ``t - shift``."""
        with torch.no_grad():
            if self.kind == "paper":
                return paper_fq(t, self.l, self.u, self.alpha, self.beta, self.nlev, codes_only=True, clamp=self.clamp)
            return deploy_fq(t, self.step(), self.shift(), self.qmin, self.qmax, codes_only=True)

    def dequant(self, codes: torch.Tensor) -> torch.Tensor:
        """Value of stored codes, computed with the same operations as :meth:`forward`."""
        s = self.step()
        if self.kind == "paper":
            return codes * s + (self.l + self.beta)
        return codes * s

    # -- DOBI -------------------------------------------------------------------------------------
    @torch.no_grad()
    def candidates(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(l_k, u_k) for k = 0..99, shape (K, *param_shape)."""
        k = torch.arange(DOBI_STEPS, device=t.device, dtype=t.dtype)
        per_ch = self.l.ndim == 2
        flat = t.reshape(t.shape[0], -1) if per_ch else t.reshape(1, -1)
        m, mx = torch.aminmax(flat, dim=1)
        if self.kind == "sym":  # symmetric ranges [-A, A], shrinking at the same rate as the paper's
            a = torch.maximum(m.abs(), mx.abs())
            u = a[None] * (1 - k[:, None] / (DOBI_DIV / 2))
            l = -u
        else:
            r = (mx - m)[None]
            l = m[None] + k[:, None] * r / DOBI_DIV
            u = mx[None] - k[:, None] * r / DOBI_DIV
        shape = (DOBI_STEPS,) + tuple(self.l.shape)
        return l.reshape(shape), u.reshape(shape)

    @torch.no_grad()
    def dobi_(self, t: torch.Tensor) -> None:
        """Keep the candidate range with the least L2 quantization error on ``t`` (alpha = beta = 0)."""
        t = t.float()
        ls, us = self.candidates(t)
        err = dobi_errors(t, ls, us, self.kind, self.bits)  # (K,) or (K, C)
        best = err.argmin(0)
        if self.l.ndim == 2:
            idx = best.view(1, -1, 1)
            self.l.copy_(ls.gather(0, idx)[0])
            self.u.copy_(us.gather(0, idx)[0])
        else:
            self.l.copy_(ls[best])
            self.u.copy_(us[best])
        self.alpha.zero_()
        self.beta.zero_()
        self.dobi_k = best.detach().cpu()

    @torch.no_grad()
    def minmax_(self, t: torch.Tensor) -> None:
        """Plain min-max range (DOBI's k = 0), for comparison."""
        ls, us = self.candidates(t.float())
        self.l.copy_(ls[0])
        self.u.copy_(us[0])
        self.alpha.zero_()
        self.beta.zero_()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, kind={self.kind}, shape={tuple(self.l.shape)}" + (", clamp" if self.clamp else "")

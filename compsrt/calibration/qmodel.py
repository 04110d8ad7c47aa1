"""Turning a SwinIR(-light) model into its CompSRT fake-quantized twin (paper or deploy form).

Per Swin block 16 quantizers: weight + input of the q, k, v (qkv split into three Linears), proj,
fc1 and fc2 Linears, and the attention operands q (after the 1/sqrt(d) scaling), k, v and the softmax
probabilities. Convs, LayerNorms, biases, softmax, GELU and residual adds stay FP32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CompsrtError
from ..hadamard import hadamard, next_pow2, rotate_last, rotate_tokens
from .config import QuantConfig, site_matches
from .quant import FakeQuant

def prune_mask(wt: torch.Tensor, prune: str | None) -> torch.Tensor:
    """Frozen keep-mask (bool, same shape) of rotated weights: exact per-tensor magnitude quantile, or 2:4 along K."""
    if prune is None:
        return torch.ones_like(wt, dtype=torch.bool)
    a = wt.abs()
    if prune == "2:4":
        out, n = a.shape
        g = a.reshape(out, n // 4, 4)
        top = g.topk(2, dim=-1).indices
        keep = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, top, True)
        return keep.reshape(out, n)
    ratio = float(prune)
    k = int(round(ratio * a.numel()))  # prune exactly the k smallest magnitudes (ties broken by index)
    order = a.flatten().argsort(stable=True)
    keep = torch.ones(a.numel(), dtype=torch.bool, device=a.device)
    keep[order[:k]] = False
    return keep.view_as(a)


def code_dtype(codes: torch.Tensor) -> torch.dtype:
    """int8 for codes in the b-bit range; int32 for paper-mode codes, which the authors do not clamp: when
    DQC shrinks a step (alpha < 0), (u - l) / s exceeds 2**b - 1 and the codes need more bits (kept exactly,
    so the checkpoint computes what the simulation computed, and the packed size shows the real width)."""
    lo, hi = (float(codes.min()), float(codes.max())) if codes.numel() else (0.0, 0.0)
    for dt in (torch.int8, torch.int32):
        info = torch.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    raise CompsrtError(f"weight codes span [{lo:.3g}, {hi:.3g}], beyond int32: a quantizer step collapsed to ~0 "
                       "(paper mode, unclamped codes); calibrate with --mode deploy, or fewer iterations")


class QLinear(nn.Module):
    """A Linear whose weight and input are quantized in the Hadamard domain.

    Buffers: ``fp_weight`` (out, m) during calibration; ``codes`` (int8, (out, n)) once frozen;
    ``mask`` (bool, (out, n)). ``bias`` is the FP bias (deploy folds the activation shift into it on the fly).
    """

    def __init__(self, linear: nn.Linear | None, cfg: QuantConfig, name: str = "",
                 weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        super().__init__()
        if linear is not None:
            weight, bias = linear.weight, linear.bias
        self.cfg = cfg
        self.mode = cfg.mode
        self.out_features, self.in_features = weight.shape
        self.n = next_pow2(self.in_features)
        self.register_buffer("fp_weight", weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float(), requires_grad=False)
        self.register_buffer("codes", torch.zeros(0, dtype=torch.int8))
        self.register_buffer("mask", torch.ones(self.out_features, self.n, dtype=torch.bool))
        self.register_buffer("wt_cache", torch.zeros(0), persistent=False)
        wkind = "paper" if cfg.mode == "paper" else "sym"
        self.wq = FakeQuant(cfg.site_bits(name, "w"), wkind, channels=self.out_features if cfg.mode == "deploy" else None,
                            clamp=cfg.clamp_codes)
        self.aq = FakeQuant(cfg.site_bits(name, "a"), "paper" if cfg.mode == "paper" else "asym", clamp=cfg.clamp_codes)

    @property
    def frozen(self) -> bool:
        return self.codes.numel() > 0

    def rotated_weight(self) -> torch.Tensor:
        """[W, 0] @ H_n, pruned (zeros where the mask drops), (out, n); constant while calibrating (weights and
        mask are frozen), so kept once computed (a non-persistent buffer: moves with the module, never saved)."""
        if self.wt_cache.shape != self.mask.shape:
            return rotate_last(self.fp_weight, self.n) * self.mask
        return self.wt_cache

    @torch.no_grad()
    def init_weight_(self) -> None:
        """Pruning mask (frozen) then DOBI on the rotated weight (data-free)."""
        wt = rotate_last(self.fp_weight, self.n)
        self.mask.copy_(prune_mask(wt, self.cfg.prune))
        # the kept copy is rotated in float64: it must not inherit TF32 from a calibration that enabled it
        self.wt_cache = (rotate_last(self.fp_weight.double(), self.n) * self.mask).float()
        self.wq.dobi_(self.wt_cache)

    def qweight(self) -> torch.Tensor:
        """The dequantized rotated weight (out, n) (deploy) or the rotated-back cropped weight (out, m) (paper)."""
        if self.frozen:
            w = self.wq.dequant(self.codes.float())
        else:
            w = self.wq(self.rotated_weight())
        if self.mode == "paper":
            w = w * self.mask  # pruned weights are exact zeros (not stored)
            return (w @ hadamard(self.n, w.device, w.dtype))[:, : self.in_features]
        return w

    @torch.no_grad()
    def weight_codes(self) -> torch.Tensor:
        """Integer codes (as float) of the rotated weight, zero where pruned; the stored ones once frozen."""
        if self.frozen:
            return self.codes.float()
        codes = self.wq.codes(self.rotated_weight())
        return codes * self.mask if self.mode == "paper" else codes

    @torch.no_grad()
    def freeze_(self) -> None:
        """Store the integer codes of the rotated weight and drop the FP weight."""
        codes = self.weight_codes()
        self.codes = codes.to(code_dtype(codes))
        self.fp_weight = torch.zeros(0, device=self.codes.device)
        self.wt_cache = torch.zeros(0, device=self.codes.device)

    def folded_bias(self, w: torch.Tensor) -> torch.Tensor:
        """Deploy: b' = b + shift * sum_k DQ(W~)[o, k]  (so the graph computes DQ(Q(x~ - shift)) DQ(W~)^T + b')."""
        return self.bias + self.aq.shift() * w.sum(1)

    def forward_rotated(self, xt: torch.Tensor) -> torch.Tensor:
        """Input already rotated: xt = [x, 0] @ H_n."""
        if self.aq.observe:
            self.aq(xt)
            return self._fp_from_rotated(xt)
        w = self.qweight()
        if self.mode == "paper":
            xq = self.aq(xt) @ hadamard(self.n, xt.device, xt.dtype)
            return F.linear(xq[..., : self.in_features], w, self.bias)
        return F.linear(self.aq(xt), w, self.folded_bias(w))

    def _fp_from_rotated(self, xt: torch.Tensor) -> torch.Tensor:
        x = (xt @ hadamard(self.n, xt.device, xt.dtype))[..., : self.in_features]
        return F.linear(x, self.fp_weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.aq.observe:
            self.aq(rotate_last(x, self.n))
            return F.linear(x, self.fp_weight, self.bias)
        return self.forward_rotated(rotate_last(x, self.n))

    def deploy_site(self, name: str):
        """This Linear in the export's terms (the site contract, :mod:`compsrt.sites`)."""
        from .deploy import linear_site

        return linear_site(name, self)


class QKV(nn.Module):
    """The fused qkv Linear split into three quantized 60->60 Linears sharing one rotation of the input."""

    def __init__(self, qkv: nn.Linear, cfg: QuantConfig, name: str = ""):
        super().__init__()
        dim = qkv.in_features
        w, b = qkv.weight.detach(), qkv.bias.detach()
        self.q = QLinear(None, cfg, f"{name}.q", weight=w[:dim], bias=b[:dim])
        self.k = QLinear(None, cfg, f"{name}.k", weight=w[dim : 2 * dim], bias=b[dim : 2 * dim])
        self.v = QLinear(None, cfg, f"{name}.v", weight=w[2 * dim :], bias=b[2 * dim :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.q.aq.observe:
            return torch.cat([self.q(x), self.k(x), self.v(x)], -1)
        xt = rotate_last(x, self.q.n)
        return torch.cat([self.q.forward_rotated(xt), self.k.forward_rotated(xt), self.v.forward_rotated(xt)], -1)


class OperandQuant(nn.Module):
    """Quantizer of an attention operand (replaces the ``quant_*`` identity hooks of WindowAttention).

    paper : rotate the last axis (head_dim padded 10->16, or the 64 keys of the probabilities),
            quantize, rotate back, crop.
    deploy: q, k -> rotated along head_dim (padded to 16), returned *in the rotated domain* (q~ k~^T = q k^T);
            k may carry an asymmetric shift that is subtracted and not added back (softmax is invariant to
            a per-row constant, and q~ . shift is constant along the key axis);
            attn -> rotated along the key axis, v -> rotated along the token axis (P H . H v = P v).
    """

    def __init__(self, role: str, cfg: QuantConfig, name: str = ""):
        super().__init__()
        self.role = role
        self.mode = cfg.mode
        if cfg.mode == "paper":
            kind = "paper"
        else:
            kind = "asym" if role == "k" else "sym"
        self.fq = FakeQuant(cfg.site_bits(name, "a"), kind, clamp=cfg.clamp_codes)

    def rotate(self, t: torch.Tensor) -> torch.Tensor:
        if self.mode == "deploy" and self.role == "v":
            return rotate_tokens(t)
        return rotate_last(t)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.fq.observe:
            self.fq(self.rotate(t))
            return t
        tt = self.rotate(t)
        y = self.fq(tt)
        if self.mode == "deploy":
            return y
        m = t.shape[-1]
        return (y @ hadamard(tt.shape[-1], y.device, y.dtype))[..., :m]

    def deploy_site(self, name: str):
        """This operand in the export's terms (the site contract, :mod:`compsrt.sites`)."""
        from .deploy import operand_site

        return operand_site(name, self)


def quantize_model(model: nn.Module, cfg: QuantConfig, init_weights: bool = True) -> nn.Module:
    """Replace, in place, every Swin block's Linears and attention hooks by quantized modules (bits per site
    from ``cfg``; a ``--site-bits`` pattern that matches no site is refused)."""
    from ..models.swinir import SwinTransformerBlock

    for name, blk in list(model.named_modules()):
        if not isinstance(blk, SwinTransformerBlock):
            continue
        a = blk.attn
        a.qkv = QKV(a.qkv, cfg, f"{name}.attn.qkv")
        a.proj = QLinear(a.proj, cfg, f"{name}.attn.proj")
        blk.mlp.fc1 = QLinear(blk.mlp.fc1, cfg, f"{name}.mlp.fc1")
        blk.mlp.fc2 = QLinear(blk.mlp.fc2, cfg, f"{name}.mlp.fc2")
        for role in ("q", "k", "v", "attn"):
            setattr(a, f"quant_{role}", OperandQuant(role, cfg, f"{name}.attn.quant_{role}"))
    names = list(site_bits(model))
    for pattern, target, _ in cfg.overrides:
        if not any(site_matches(n, pattern) for n in names):
            raise CompsrtError(f"--site-bits pattern {pattern!r} matches no quantized site (names such as "
                               f"{names[0] if names else '-'}; a tail such as mlp.fc2 or attn.quant_attn matches every block)")
    for p in model.parameters():
        p.requires_grad_(False)
    for fq in quantizers(model):
        fq.l.requires_grad_(True)
        fq.u.requires_grad_(True)
        fq.alpha.requires_grad_(True)
        fq.beta.requires_grad_(fq.kind != "sym")
    dev = next(iter(model.parameters())).device
    model.to(dev)  # the new quantizer tensors live where the model does
    if init_weights:
        for m in model.modules():
            if isinstance(m, QLinear):
                m.init_weight_()
    model.quant_config = cfg
    return model


def site_bits(model: nn.Module) -> dict[str, dict[str, int]]:
    """{site name: {"w": weight bits, "a": activation bits}} (operands: "a" only), in module order: what the
    checkpoint, the packed file, the export's sidecar and ``compsrt inspect`` carry."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, QLinear):
            out[name] = {"w": m.wq.bits, "a": m.aq.bits}
        elif isinstance(m, OperandQuant):
            out[name] = {"a": m.fq.bits}
    return out


def quantizers(model: nn.Module) -> list[FakeQuant]:
    return [m for m in model.modules() if isinstance(m, FakeQuant)]


def qlinears(model: nn.Module) -> list[QLinear]:
    return [m for m in model.modules() if isinstance(m, QLinear)]


def set_observe(model: nn.Module, on: bool) -> None:
    """Activation quantizers pass FP through and run DOBI on what flows (weights are not touched)."""
    for m in model.modules():
        if isinstance(m, QLinear):
            m.aq.observe = on
        elif isinstance(m, OperandQuant):
            m.fq.observe = on


def trainable_params(model: nn.Module) -> list[torch.Tensor]:
    return [p for fq in quantizers(model) for p in (fq.l, fq.u, fq.alpha, fq.beta) if p.requires_grad]


@torch.no_grad()
def weight_code_bits(model: nn.Module) -> int:
    """Bits the widest kept weight-code range needs: ``bits`` while codes stay in their b-bit range (always
    in deploy mode); more when paper-mode DQC shrank a step below (u - l) / (2**b - 1)."""
    widths = [0]
    for m in qlinears(model):
        kept = m.weight_codes()[m.mask]
        if kept.numel():
            widths.append(int(kept.max() - kept.min()).bit_length())
    return max(widths)


def activation_code_bits(model: nn.Module) -> int:
    """Bits the widest code span of the activation and attention quantizers needs (``bits`` in deploy mode)."""
    weights = {id(m.wq) for m in qlinears(model)}
    spans = [int(fq.code_span().max()) for fq in quantizers(model) if id(fq) not in weights]
    return max(spans, default=0).bit_length()


@torch.no_grad()
def observe_and_freeze(model: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Activation ranges from one observed ``batch`` (DOBI), then frozen: a deploy-mode model without a calibration
    run, for tests and benchmarks whose result does not depend on accuracy. Returns the model in eval mode."""
    set_observe(model, True)
    model(batch)
    set_observe(model, False)
    freeze_model(model)
    return model.eval()


@torch.no_grad()
def freeze_model(model: nn.Module) -> None:
    for m in qlinears(model):
        if not m.frozen:
            m.freeze_()

"""The calibration side of the site contract: a deploy-mode quantized module as a :class:`compsrt.sites.Site`.

:class:`~compsrt.calibration.qmodel.QLinear` and :class:`~compsrt.calibration.qmodel.OperandQuant` answer
``deploy_site(name)`` through these functions; the contract itself (math, fields) is :mod:`compsrt.sites`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import CompsrtError
from ..sites import Site

LINEAR_ROLES = {"attn.qkv.q": "q", "attn.qkv.k": "k", "attn.qkv.v": "v", "attn.proj": "proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}


def _role(name: str) -> str:
    for suffix, role in LINEAR_ROLES.items():
        if name.endswith(suffix):
            return role
    raise KeyError(name)


def _f32(t) -> float:
    return float(np.float32(torch.as_tensor(t).detach().float().reshape(-1)[0].item()))


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().cpu().float().numpy().astype(dtype) if dtype != np.int8 else t.detach().cpu().to(torch.int8).numpy()


@torch.no_grad()
def linear_site(name: str, q) -> Site:
    """Site record of a deploy-mode ``QLinear`` (frozen or not)."""
    aq, wq = q.aq, q.wq
    codes = q.weight_codes()
    w = q.qweight()
    site = Site(
        0, name, "linear", q, quantizer=aq, mode=q.mode, block=name.rsplit(".attn", 1)[0].rsplit(".mlp", 1)[0],
        role=_role(name), m=int(q.in_features), n=int(q.n), scale=_f32(aq.step()), shift=_f32(aq.shift()),
        qmin=int(aq.qmin), qmax=int(aq.qmax), bits=int(aq.bits), codes=_np(codes, np.int8),
        w_scale=_np(wq.step().reshape(-1), np.float32), bias=_np(q.folded_bias(w), np.float32),
        bias_fp=_np(q.bias, np.float32), mask=q.mask.detach().cpu().numpy().astype(bool),
        out_features=int(q.out_features),
    )
    site.extra["w_qmin"], site.extra["w_qmax"], site.extra["w_bits"] = int(wq.qmin), int(wq.qmax), int(wq.bits)
    if site.codes.shape != (site.out_features, site.n):
        raise CompsrtError(f"{name}: weight codes have shape {site.codes.shape}, expected {(site.out_features, site.n)}")
    return site


@torch.no_grad()
def operand_site(name: str, op) -> Site:
    """Site record of a deploy-mode attention ``OperandQuant`` (widths filled in by the export's trace)."""
    fq = op.fq
    return Site(0, name, "act", op, quantizer=fq, mode=op.mode, block=name.rsplit(".attn", 1)[0], role=op.role,
                axis="tokens" if op.role == "v" else "last", scale=_f32(fq.step()), shift=_f32(fq.shift()),
                qmin=int(fq.qmin), qmax=int(fq.qmax), bits=int(fq.bits))

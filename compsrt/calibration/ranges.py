"""Per-tensor activation ranges on training patches: what an FP16 engine would have to hold.

Every input and output of the operations that an internal precision can reduce (convs, LayerNorms, Linears,
GELU, softmax; the residual stream is the LayerNorm inputs and the branch outputs added into it) gets its
largest |value| over the patches, with the operation kinds (:data:`compsrt.models.precision.OP_KINDS`) that
read or write it: a tensor is FP16 in an fp16 graph when any of its kinds runs in FP16. Export reads these
(the checkpoint's ``activation_ranges``, or ``compsrt ranges``' JSON) to refuse FP16 where it would overflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from ..models.precision import FP16_MAX
from .qmodel import QKV, QLinear

RANGES_FORMAT = "compsrt.activation_ranges/1"
_GROUP = re.compile(r"^layers\.(\d+)\.")
_RESIDUAL_ENDS = ("attn.proj", "mlp.fc2", "conv_first", "conv_after_body")  # branch outputs added to the stream


def _linear_kinds(name: str, quantized: bool) -> tuple[list[str], list[str]]:
    """(input kinds, output kinds) of a Linear: its own (unless quantized: Q/DQ stays FP32) and its neighbours'."""
    own = [] if quantized else ["linear"]
    ins, outs = list(own), list(own)
    if name.endswith("attn.qkv") and not quantized:
        outs.append("attention")  # q, k, v feed the attention products (FP operands only)
    if name.endswith("attn.proj"):
        ins += [] if quantized else ["attention"]
        outs.append("residual")
    if name.endswith("mlp.fc1"):
        outs.append("gelu")
    if name.endswith("mlp.fc2"):
        ins += [] if quantized else ["gelu"]
        outs.append("residual")
    return ins, outs


def _kinds(name: str, mod: nn.Module) -> tuple[list[str], list[str]] | None:
    if isinstance(mod, (QLinear, QKV)):
        return _linear_kinds(name, quantized=True)
    if isinstance(mod, nn.Linear):
        return _linear_kinds(name, quantized=False)
    if isinstance(mod, nn.Conv2d):
        ins, outs = ["conv"], ["conv"]
        if name.startswith("layers.") or name in _RESIDUAL_ENDS:
            outs.append("residual")
        if name == "upsample.0":
            ins.append("residual")  # the long skip's sum
        return ins, outs
    if isinstance(mod, nn.LayerNorm):
        return (["layernorm"] if name == "patch_embed.norm" else ["layernorm", "residual"]), ["layernorm"]
    if isinstance(mod, nn.GELU):
        return ["gelu"], ["gelu"]
    if isinstance(mod, nn.Softmax):
        return ["softmax"], ["softmax", "attention"]
    return None


def group_of(name: str) -> str:
    """The residual group of a tensor name (``group 0`` ...), or ``head`` / ``tail`` outside the groups."""
    m = _GROUP.match(name)
    if m:
        return f"group {m.group(1)}"
    return "head" if name.startswith(("conv_first", "patch_embed")) else "tail"


def record_ranges(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict:
    """Largest |activation| of every reducible op's input and output over ``batches`` (B, 3, h, w) in [0, 1]."""
    peaks: dict[str, torch.Tensor] = {}
    kinds: dict[str, list[str]] = {}
    per_patch: list[torch.Tensor] = []
    batch: dict[str, torch.Tensor | int | None] = {"size": 0, "peak": None}  # per-patch peaks of the batch

    def note(key: str, t: torch.Tensor, k: list[str]) -> None:
        if not k:
            return
        a = t.detach().abs().float().flatten(1).amax(1) if t.dim() > 1 else t.detach().abs().float().amax()[None]
        kinds[key] = k
        peaks[key] = torch.maximum(peaks[key], a.max()) if key in peaks else a.max()
        if a.numel() == batch["size"]:  # image-shaped (not windowed): one peak per patch
            batch["peak"] = a if batch["peak"] is None else torch.maximum(batch["peak"], a)

    def hook(name: str, ins: list[str], outs: list[str]):
        def fn(_mod, args, out):
            note(f"{name}:in", args[0], ins)
            note(f"{name}:out", out, outs)
        return fn

    handles = []
    for name, mod in model.named_modules():
        k = _kinds(name, mod)
        if k is not None and not any(isinstance(p, (QLinear, QKV)) for p in _parents(model, name)):
            handles.append(mod.register_forward_hook(hook(name, *k)))
    n = 0
    try:
        with torch.no_grad():
            for x in batches:
                batch.update(size=x.shape[0], peak=None)
                model(x)
                n += x.shape[0]
                if batch["peak"] is not None:
                    per_patch.append(batch["peak"].cpu())
    finally:
        for h in handles:
            h.remove()
    tensors = {k: {"max_abs": float(v), "kinds": kinds[k]} for k, v in peaks.items()}
    groups: dict[str, dict] = {}
    for k, rec in tensors.items():
        g = groups.setdefault(group_of(k), {"max_abs": 0.0, "tensor": None, "residual_max_abs": 0.0})
        if rec["max_abs"] >= g["max_abs"]:
            g.update(max_abs=rec["max_abs"], tensor=k)
        if "residual" in rec["kinds"]:  # the residual stream (softmax inputs carry the -100 shift mask)
            g["residual_max_abs"] = max(g["residual_max_abs"], rec["max_abs"])
    for g in groups.values():
        g["fraction_of_fp16_max"] = g["max_abs"] / FP16_MAX
    pp = torch.cat(per_patch) if per_patch else torch.zeros(1)
    return {"format": RANGES_FORMAT, "patches": n, "tensors": tensors, "groups": groups,
            "per_patch_peak": {"max": float(pp.max()), "median": float(pp.median()), "min": float(pp.min())}}


def _parents(model: nn.Module, name: str) -> list[nn.Module]:
    """The modules above ``name`` (a QKV's three QLinears are recorded once, as the QKV)."""
    parts = name.split(".")
    return [model.get_submodule(".".join(parts[:i])) for i in range(1, len(parts))]


def training_batches(scale: int, patches: int, patch: int, batch: int, seed: int, device: torch.device,
                     data=None) -> list[torch.Tensor]:
    """``patches`` random LR training patches (never benchmark images) in batches of ``batch``."""
    from .data import PatchSampler, load_training_lr

    images = load_training_lr(scale, data, progress=False)
    sampler = PatchSampler([im for _, im in images], patch, device, seed)
    return [sampler.sample(min(batch, patches - i)) for i in range(0, patches, batch)]


def ranges_for_file(path, patches: int = 32, patch: int = 64, batch: int = 4, seed: int = 0,
                    device: str | None = None, data=None) -> dict:
    """Activation ranges of a model file (FP weights or a compressed checkpoint), tagged with its sha256."""
    from ..files import sha256_file
    from .checkpoint import load_model
    from .pipeline import pick_device

    dev = pick_device(device)
    model, meta = load_model(path)
    model = model.to(dev)
    res = record_ranges(model, training_batches(int(meta["scale"]), patches, patch, batch, seed, dev, data))
    res.update(weights=str(path), weights_sha256=sha256_file(path), scale=int(meta["scale"]), patch=patch,
               seed=seed)
    return res

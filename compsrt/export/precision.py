"""Reduced internal precision at export: the torch reference of a bf16 / fp16 graph, and the FP16 overflow guard.

The graph's casts come from tracing :class:`~compsrt.export.graph.StaticSwinIR` under an
:class:`~compsrt.models.precision.InternalPrecision`; :func:`reference_forward` runs that same forward on an
image of any size, so accuracy is scored on exactly the operations the graph declares.

The guard: FP16 tops out at 65,504. SwinIR's activations grow across the residual groups, and an engine whose
FP16 tensor overflows writes inf/NaN (black tiles). Export with ``fp16`` internals therefore needs the
activation ranges recorded on training patches (:mod:`compsrt.calibration.ranges`) and refuses when a tensor
that would be FP16 reaches ``FP16_MAX / GUARD_MARGIN``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CompsrtError
from ..models.precision import FP16_MAX, InternalPrecision
from .graph import StaticSwinIR

# Refuse FP16 when a recorded |activation| exceeds FP16_MAX / 4 = 16,376. The ranges come from a few dozen
# training patches and an unseen image can go further: over 32 patches the stand-ins' per-patch peaks spread
# 1.5x (x4: 52.6 to 80.3; benchmarks/export/results/precision/ranges_x*.json), so one factor of 2 is for images
# beyond the recorded ones, and a second for what the engine adds (FP16 rounding of every op before the peak,
# other accumulation orders, larger tiles than the patches).
GUARD_MARGIN = 4.0


def reference_forward(model: nn.Module, x: torch.Tensor, internal: InternalPrecision,
                      cache: dict | None = None) -> torch.Tensor:
    """``model`` on ``x`` (B, 3, H, W) in [0, 1] with the graph's casts: reflect-pad to the window, crop back.

    ``cache``: a dict that keeps the static forward of each padded size (its masks and biases) between calls.
    """
    h, w = x.shape[-2:]
    ws = model.window_size
    ph, pw = (-h) % ws, (-w) % ws
    xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
    key = (xp.shape[-2], xp.shape[-1], internal, x.device)
    static = cache.get(key) if cache is not None else None
    if static is None:
        device = x.device
        model.cpu()  # the static forward reads its constants on the CPU, then they follow the model
        static = StaticSwinIR(model, (xp.shape[-2], xp.shape[-1]), internal=internal)
        model.to(device)
        static._consts = {k: tuple(None if t is None else t.to(device) for t in v) for k, v in static._consts.items()}
        if cache is not None:
            cache[key] = static
    y = static(xp)
    s = model.scale
    return y[..., : h * s, : w * s]


def read_ranges(path, checkpoint_sha256: str) -> dict:
    """A `compsrt ranges` JSON, refused when it was recorded for another model file."""
    import json
    from pathlib import Path

    from ..calibration.ranges import RANGES_FORMAT

    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CompsrtError(f"--ranges {path}: not a readable JSON file ({exc}); create it with `compsrt ranges`")
    if not isinstance(res, dict) or res.get("format") != RANGES_FORMAT or not isinstance(res.get("tensors"), dict):
        raise CompsrtError(f"--ranges {path}: not an activation ranges file; create it with `compsrt ranges`")
    if res.get("weights_sha256") != checkpoint_sha256:
        raise CompsrtError(f"--ranges {path} was recorded for another model file ({res.get('weights')}); "
                           "run `compsrt ranges --weights` on the checkpoint you export")
    return res


def fp16_threshold() -> float:
    return FP16_MAX / GUARD_MARGIN


def fp16_tensors(ranges: dict, internal: InternalPrecision) -> list[tuple[str, float]]:
    """(tensor, max |value|) of every recorded tensor that ``internal`` computes or stores in its reduced dtype."""
    out = []
    for name, rec in ranges["tensors"].items():
        if any(kind in internal.low for kind in rec["kinds"]):
            out.append((name, float(rec["max_abs"])))
    return out


def check_fp16_guard(ranges: dict | None, internal: InternalPrecision, source: str) -> dict | None:
    """Raise a one-line CompsrtError when fp16 internals would come within the margin of FP16's range.

    Returns the guard's record for the sidecar (None for fp32 / bf16 internals, whose range is FP32's).
    """
    if internal.name != "fp16":
        return None
    if ranges is None:
        raise CompsrtError("--internal-precision fp16 needs activation ranges to rule out FP16 overflow: record them "
                           "with `compsrt ranges --weights FILE --out ranges.json` and pass --ranges ranges.json "
                           "(checkpoints from `compsrt calibrate` carry them), or use --internal-precision bf16")
    checked = fp16_tensors(ranges, internal)
    if not checked:
        raise CompsrtError(f"{source}: the activation ranges name no tensor of the fp16 operations; "
                           "record them again with `compsrt ranges`")
    name, peak = max(checked, key=lambda t: t[1])
    limit = fp16_threshold()
    if not peak < limit:  # NaN / inf fail too
        raise CompsrtError(f"--internal-precision fp16 refused: tensor {name} reaches |{peak:,.0f}| on training "
                           f"patches, above the FP16 guard {limit:,.0f} (65,504 / {GUARD_MARGIN:g}); "
                           "use --internal-precision bf16 (FP32's range) or fp32")
    return {"max_abs": peak, "tensor": name, "threshold": limit, "margin": GUARD_MARGIN, "source": source,
            "patches": ranges.get("patches")}

"""Library entry point behind ``compsrt calibrate``: FP weights -> compressed checkpoint."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..errors import CompsrtError
from ..files import sha256_file
from ..models.weights import check_state_dict, read_state_dict, resolve_weights
from ..models.swinir import SwinIR, SwinIRConfig
from .checkpoint import save_checkpoint
from .data import PatchSampler, load_training_lr
from .distill import DistillSettings, calibrate, for_device
from .qmodel import QuantConfig
from .ranges import record_ranges

RANGE_BATCHES = 8  # x 4 training patches: the activation ranges stored with the checkpoint


def pick_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CompsrtError("--device cuda asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


def compress(scale: int, cfg: QuantConfig, out: str | os.PathLike, settings: DistillSettings | None = None,
             weights: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
             device: str | None = None, progress: bool = True, on_estimate=None) -> dict:
    """Calibrate SwinIR-light x``scale`` with ``cfg`` and write the checkpoint ``out``; returns its meta.
    ``on_estimate``: see :func:`compsrt.calibration.distill.calibrate`."""
    settings = settings or DistillSettings()
    if (settings.iters is not None and settings.iters < 0) or settings.batch < 1:
        raise CompsrtError("--iters must be >= 0 and --batch >= 1")
    dev = pick_device(device)
    settings = for_device(settings, dev)
    path = resolve_weights(scale, weights)
    state = read_state_dict(path)
    check_state_dict(state, scale, str(path))
    fp = SwinIR(SwinIRConfig(scale=scale))
    fp.load_state_dict(state, strict=True)
    fp.eval()
    t0 = time.perf_counter()
    images = load_training_lr(scale, Path(data) if data else None, progress=progress)
    sampler = PatchSampler([im for _, im in images], settings.patch, dev, settings.seed)
    t_data = time.perf_counter() - t0
    student, log = calibrate(fp, cfg, sampler, settings, progress=progress, on_estimate=on_estimate)
    ranges = record_ranges(student.eval(), [sampler.sample(4) for _ in range(RANGE_BATCHES)])
    meta = {
        "scale": scale,
        "fp_weights": Path(path).name,
        "fp_weights_sha256": sha256_file(path),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
        "calibration_images": len(sampler.images),
        "calibration_sources": sorted({n.split("/")[0] for n, _ in images}),
        "seconds_data": t_data,
        "log": log,
        "activation_ranges": ranges,  # what export's FP16 guard reads (compsrt.calibration.ranges)
    }
    save_checkpoint(student, meta, out)
    return meta

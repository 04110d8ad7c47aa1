"""torch runner (FP or fake-quant module; autocast bf16/fp16; ``torch.compile``) and its model loaders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ...errors import CompsrtError
from ..timing import StageTimer
from .base import Backend

DTYPES = ("fp32", "bf16", "fp16")


class TorchBackend(Backend):
    """A torch module (FP or fake-quant); optional autocast (bf16/fp16) and ``torch.compile``."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", dtype: str = "fp32", compile: bool = False, label: str | None = None):
        import torch

        if dtype not in DTYPES:
            raise CompsrtError(f"dtype must be one of {DTYPES}, got {dtype}")
        self.torch = torch
        try:
            self.device = torch.device(device)
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise CompsrtError(f"device {device} requested but torch sees no CUDA device; use --device cpu")
        except RuntimeError as exc:
            raise CompsrtError(f"bad torch device {device!r}: {exc}") from None
        self.model = model.eval().to(self.device)
        self.scale = int(getattr(model, "scale", 0) or getattr(getattr(model, "config", None), "scale", 0))
        self.dtype = dtype
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        self.compiled = compile
        self._seen: set[tuple] = set()
        self.fn = torch.compile(self.model, dynamic=False) if compile else self.model
        self.label = label or f"torch-{dtype}{'-compiled' if compile else ''}"
        self.window = int(getattr(model, "window_size", 8))
        self.is_cuda = self.device.type == "cuda"
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def _forward(self, xd):
        torch = self.torch
        with torch.inference_mode():
            fn = self.fn
            if self.compiled and tuple(xd.shape) not in self._seen:
                # One eager pass per new shape first: it builds the shifted-window masks (CPU ops,
                # cached per size) outside the compiled graph, which then sees them as constants.
                self._seen.add(tuple(xd.shape))
                fn = self.model
            if self.autocast_dtype is None:
                return fn(xd)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return fn(xd)

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        torch = self.torch
        if not self.is_cuda:
            t0 = time.perf_counter()
            y = self._forward(torch.from_numpy(x)).float().numpy()
            timer.add("compute", time.perf_counter() - t0)
            return y
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        host = torch.from_numpy(x).pin_memory()
        ev[0].record()
        xd = host.to(self.device, non_blocking=True)
        ev[1].record()
        yd = self._forward(xd).float()
        ev[2].record()
        out = torch.empty(yd.shape, dtype=torch.float32, pin_memory=True)
        out.copy_(yd, non_blocking=True)
        ev[3].record()
        ev[3].synchronize()
        timer.add("h2d", ev[0].elapsed_time(ev[1]) / 1e3)
        timer.add("compute", ev[1].elapsed_time(ev[2]) / 1e3)
        timer.add("d2h", ev[2].elapsed_time(ev[3]) / 1e3)
        return out.numpy()

    def memory(self) -> dict:
        if self.is_cuda:
            return {"device_peak_bytes": int(self.torch.cuda.max_memory_allocated(self.device))}
        return {"device_peak_bytes": None}

    def describe(self) -> dict:
        return super().describe() | {"backend": "torch", "label": self.label, "dtype": self.dtype, "compiled": self.compiled}


def torch_fp_backend(scale: int, weights=None, device: str = "cpu", dtype: str = "fp32", compile: bool = False,
                     sha256: str | None = None) -> TorchBackend:
    """The FP SwinIR-light of ``scale`` (weights resolved as everywhere: --weights, weights dir, download)."""
    from ...models.weights import load_swinir

    return TorchBackend(load_swinir(scale, weights, sha256=sha256), device, dtype, compile,
                        label=f"torch-fp-{dtype}{'-compiled' if compile else ''}")


def torch_checkpoint_backend(path: str | os.PathLike, device: str = "cpu", dtype: str = "fp32",
                             compile: bool = False) -> TorchBackend:
    """The model of any model file: a compressed checkpoint or pack (fake-quant), or FP weights."""
    from ...calibration.checkpoint import load_model

    if not Path(path).is_file():
        raise CompsrtError(f"checkpoint {path} does not exist; create one with `compsrt calibrate`")
    model, meta = load_model(path)
    kind = "fp" if meta["kind"] == "fp" else "fakequant"
    b = TorchBackend(model, device, dtype, compile, label=f"torch-{kind}-{dtype}{'-compiled' if compile else ''}")
    if not b.scale and meta.get("scale"):
        b.scale = int(meta["scale"])
    return b



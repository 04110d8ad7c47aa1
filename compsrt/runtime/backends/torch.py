"""torch runner (FP or fake-quant module; autocast bf16/fp16; ``torch.compile``; CUDA graphs) and its model loaders."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from ...errors import CompsrtError
from ..timing import StageTimer
from .base import Backend, Interrupted

DTYPES = ("fp32", "bf16", "fp16")
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | None) -> str:
    """``auto`` (or None) -> ``cuda`` when torch sees a GPU here, else ``cpu``; any other name as given.

    Resolved where the model runs: a Triton repository records ``auto`` and its tile model resolves it
    on the server host, which need not be the machine that wrote the repository.
    """
    if name in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def check_device_name(name: str) -> str:
    """Refuse a device name torch would not take (before it is written anywhere), one line."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise CompsrtError(f"--device {name!r} is not a device: use {DEVICE_FORMS}")
    return name


class TorchBackend(Backend):
    """A torch module (FP or fake-quant); optional autocast (bf16/fp16), ``torch.compile`` and CUDA graphs.

    ``cuda_graph`` captures one graph per input shape and replays it: one launch per batch instead of
    hundreds, so the device thread no longer competes for the GIL with the host threads of the pipelined
    upscaler (measured on the H200, benchmarks/throughput/). Replays share static buffers, so runs are
    serialised by a lock.
    """

    name = "torch"

    def __init__(self, model, device: str = "cpu", dtype: str = "fp32", compile: bool = False, label: str | None = None,
                 cuda_graph: bool = False):
        import torch

        if dtype not in DTYPES:
            raise CompsrtError(f"dtype must be one of {DTYPES}, got {dtype}")
        self.torch = torch
        device = resolve_device(device)
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
        if cuda_graph and not self.is_cuda:
            raise CompsrtError("--cuda-graph needs a CUDA device; drop it or use --device cuda")
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, tuple] = {}
        self._graph_lock = threading.Lock()
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
            # no cast cache under a graph: cached casts would live outside the captured memory pool
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=not self.cuda_graph):
                return fn(xd)

    def _replay(self, xd):
        """Run ``xd`` through this shape's CUDA graph, capturing it on first use (after two warm-up runs:
        the eager pass that builds the masks and, when compiled, the compiling pass)."""
        torch = self.torch
        key = tuple(xd.shape)
        if key not in self._graphs:
            static_x = xd.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward(static_x)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_y = self._forward(static_x)
            self._graphs[key] = (graph, static_x, static_y)
        graph, static_x, static_y = self._graphs[key]
        static_x.copy_(xd)
        graph.replay()
        return static_y

    def cancel(self) -> None:
        """Eager models stop at the next Swin block (a pre-hook that raises); a compiled model or a CUDA graph
        runs its batch to the end."""
        from ...models.swinir import SwinTransformerBlock

        def stop(module, args):
            raise Interrupted("interrupted")

        for m in self.model.modules():
            if isinstance(m, SwinTransformerBlock):
                m.register_forward_pre_hook(stop)

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        torch = self.torch
        if not self.is_cuda:
            t0 = time.perf_counter()
            y = self._forward(torch.from_numpy(x)).float().numpy()
            timer.add("compute", time.perf_counter() - t0)
            return y
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        host = torch.from_numpy(x).pin_memory()
        with self._graph_lock if self.cuda_graph else contextlib.nullcontext():
            ev[0].record()
            xd = host.to(self.device, non_blocking=True)
            ev[1].record()
            yd = (self._replay(xd) if self.cuda_graph else self._forward(xd)).float()
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
        return super().describe() | {"backend": "torch", "label": self.label, "dtype": self.dtype, "compiled": self.compiled,
                                     "cuda_graph": self.cuda_graph}


def _label(kind: str, dtype: str, compile: bool, cuda_graph: bool) -> str:
    return f"torch-{kind}-{dtype}{'-compiled' if compile else ''}{'-graph' if cuda_graph else ''}"


def torch_fp_backend(scale: int, weights=None, device: str = "cpu", dtype: str = "fp32", compile: bool = False,
                     sha256: str | None = None, cuda_graph: bool = False) -> TorchBackend:
    """The FP SwinIR-light of ``scale`` (weights resolved as everywhere: --weights, weights dir, download)."""
    from ...models.weights import load_swinir

    return TorchBackend(load_swinir(scale, weights, sha256=sha256), device, dtype, compile,
                        label=_label("fp", dtype, compile, cuda_graph), cuda_graph=cuda_graph)


def torch_checkpoint_backend(path: str | os.PathLike, device: str = "cpu", dtype: str = "fp32",
                             compile: bool = False, cuda_graph: bool = False) -> TorchBackend:
    """The model of any model file: a compressed checkpoint or pack (fake-quant), or FP weights."""
    from ...calibration.checkpoint import load_model

    if not Path(path).is_file():
        raise CompsrtError(f"checkpoint {path} does not exist; create one with `compsrt calibrate`")
    model, meta = load_model(path)
    kind = "fp" if meta["kind"] == "fp" else "fakequant"
    b = TorchBackend(model, device, dtype, compile, label=_label(kind, dtype, compile, cuda_graph), cuda_graph=cuda_graph)
    if not b.scale and meta.get("scale"):
        b.scale = int(meta["scale"])
    return b

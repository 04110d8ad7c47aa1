"""One inference interface over torch, ONNX Runtime and TensorRT.

A backend maps a float32 batch (N, 3, h, w) in [0, 1] to float32 (N, 3, s*h, s*w); ``tile`` and
``batch`` are fixed for exported graphs and engines (``None`` = any). :meth:`Backend.run` splits
or pads batches to the fixed batch and times the stages (h2d, compute, d2h) into a
:class:`~compsrt.runtime.timing.StageTimer`. Only plain numpy crosses the interface, so the tiler
and the profiler do not care which backend runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import CompsrtError
from .timing import StageTimer

DTYPES = ("fp32", "bf16", "fp16")


class Backend:
    name = "backend"
    scale: int
    tile: tuple[int, int] | None = None  # fixed (h, w) of the graph, None = any size
    batch: int | None = None  # fixed batch of the graph, None = any
    device = "cpu"

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, x: np.ndarray, timer: StageTimer | None = None) -> np.ndarray:
        """Upscale ``x`` (N, 3, h, w) float32, honouring a fixed batch by splitting and padding."""
        timer = timer or StageTimer()
        if self.tile is not None and tuple(x.shape[2:]) != tuple(self.tile):
            raise CompsrtError(f"{self.name}: input {x.shape[3]}x{x.shape[2]} does not match the fixed tile "
                               f"{self.tile[1]}x{self.tile[0]}")
        if self.batch is None or x.shape[0] == self.batch:
            return self.infer(np.ascontiguousarray(x, dtype=np.float32), timer)
        outs = []
        b = self.batch
        for i in range(0, x.shape[0], b):
            chunk = x[i : i + b]
            n = chunk.shape[0]
            if n < b:  # pad the last batch by repeating its last tile
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            outs.append(self.infer(np.ascontiguousarray(chunk, dtype=np.float32), timer)[:n])
        return np.concatenate(outs)

    def memory(self) -> dict[str, int | None]:
        """Peak device bytes used by this backend where it can tell (None otherwise)."""
        return {"device_peak_bytes": None}

    def describe(self) -> dict:
        return {"backend": self.name, "device": str(self.device), "scale": self.scale,
                "tile": list(self.tile) if self.tile else None, "batch": self.batch}

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- torch
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
    from ..models.weights import load_swinir

    return TorchBackend(load_swinir(scale, weights, sha256=sha256), device, dtype, compile,
                        label=f"torch-fp-{dtype}{'-compiled' if compile else ''}")


def torch_checkpoint_backend(path: str | os.PathLike, device: str = "cpu", dtype: str = "fp32",
                             compile: bool = False) -> TorchBackend:
    """The compressed (fake-quant) model of a calibration checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CompsrtError(f"checkpoint {path} does not exist; create one with `compsrt calibrate`")
    from ..calibration.checkpoint import load_compressed_model

    model, meta = load_compressed_model(path)
    b = TorchBackend(model, device, dtype, compile, label=f"torch-fakequant-{dtype}{'-compiled' if compile else ''}")
    if not b.scale and isinstance(meta, dict) and meta.get("scale"):
        b.scale = int(meta["scale"])
    return b


# ---------------------------------------------------------------------------------------- onnxruntime
def read_onnx_sidecar(path: Path) -> dict:
    """The export sidecar (``model.onnx.json`` or ``model.json``) if present, else {}."""
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if cand.is_file():
            try:
                return json.loads(cand.read_text())
            except (OSError, ValueError) as exc:
                raise CompsrtError(f"sidecar {cand} is unreadable ({exc}); re-run `compsrt export`") from None
    return {}


def _sidecar_tile(meta: dict) -> tuple[int, int] | None:
    t = meta.get("tile")
    if t is None:
        return None
    if isinstance(t, int):
        return (t, t)
    if isinstance(t, dict):
        return (int(t.get("h") or t.get("height")), int(t.get("w") or t.get("width")))
    return (int(t[0]), int(t[1]))


def _has_plugin_nodes(path: Path) -> bool:
    """Whether an ONNX file holds HadamardTransform plugin nodes (the --hadamard plugin export)."""
    try:
        import onnx

        from ..hadamard import PLUGIN_OP

        return any(n.op_type == PLUGIN_OP for n in onnx.load(str(path), load_external_data=False).graph.node)
    except Exception:  # not readable as ONNX: ONNX Runtime's own message says why
        return False


class OrtBackend(Backend):
    """ONNX Runtime on the CPU or CUDA execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, providers: str = "cpu", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CompsrtError("onnxruntime is not installed: `pip install onnxruntime` (or onnxruntime-gpu)") from None
        path = Path(path)
        if not path.is_file():
            raise CompsrtError(f"ONNX model {path} does not exist; create it with `compsrt export`")
        wanted = {"cpu": ["CPUExecutionProvider"],
                  "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}.get(providers)
        if wanted is None:
            raise CompsrtError(f"providers must be cpu or cuda, got {providers}")
        if providers == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise CompsrtError("the CUDA execution provider is not available in this onnxruntime; "
                               "install onnxruntime-gpu or use --providers cpu")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            hint = ""
            if "HadamardTransform" in str(exc) or _has_plugin_nodes(path):
                hint = ("; this graph uses the TensorRT plugin op HadamardTransform, which ONNX Runtime cannot run: "
                        "export the ONNX Runtime variant with `compsrt export ... --hadamard matmul`, or build an "
                        "engine from this one and use --engine")
            raise CompsrtError(f"ONNX Runtime cannot load {path}: {msg}{hint}") from None
        self.path = path
        self.device = providers
        self.providers = self.session.get_providers()
        meta = read_onnx_sidecar(path)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        shape = inp.shape
        fixed = all(isinstance(d, int) for d in shape[2:])
        self.tile = (int(shape[2]), int(shape[3])) if fixed else _sidecar_tile(meta)
        self.batch = int(shape[0]) if isinstance(shape[0], int) else None
        oshape = out.shape
        if meta.get("scale"):
            self.scale = int(meta["scale"])
        elif fixed and isinstance(oshape[2], int):
            self.scale = int(oshape[2]) // int(shape[2])
        else:
            probe = np.zeros((self.batch or 1, 3, 8, 8), np.float32)
            self.scale = self.session.run([self.output_name], {self.input_name: probe})[0].shape[2] // 8
        self.meta = meta
        self.window = int(meta.get("window_size") or 8)

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        t0 = time.perf_counter()
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        timer.add("compute", time.perf_counter() - t0)
        return np.asarray(y, dtype=np.float32)

    def describe(self) -> dict:
        return super().describe() | {"onnx": str(self.path), "providers": self.providers}

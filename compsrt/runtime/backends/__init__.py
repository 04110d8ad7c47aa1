"""Inference backends in Polygraphy's spirit: per framework a loader (file -> loaded object) and a runner.

* :mod:`.torch`: :class:`TorchBackend` runs a torch module; ``torch_fp_backend`` / ``torch_checkpoint_backend``
  load one (FP weights, or any model file: compressed, packed or FP);
* :mod:`.onnxrt`: :func:`session_from_onnx` loads, :class:`OrtBackend` runs;
* :mod:`.trt`: :func:`load_engine` checks the sidecar and deserialises, :class:`TrtBackend` runs.

Every runner is a :class:`Backend` and a context manager. :func:`open_backend` picks one from the
model flags every command shares (``--engine`` / ``--onnx`` / ``--checkpoint`` / ``--weights``).
"""

from __future__ import annotations

from ...errors import CompsrtError
from .base import Backend
from .onnxrt import OrtBackend, session_from_onnx
from .torch import DTYPES, TorchBackend, torch_checkpoint_backend, torch_fp_backend

__all__ = ["Backend", "DTYPES", "OrtBackend", "TorchBackend", "open_backend", "session_from_onnx",
           "torch_checkpoint_backend", "torch_fp_backend"]


def open_backend(engine=None, onnx=None, checkpoint=None, weights=None, scale: int = 4, device: str = "cpu",
                 dtype: str = "fp32", compile: bool = False, providers: str = "cpu",
                 weights_sha256: str | None = None, cuda_graph: bool = False) -> Backend:
    """The runner for one model: an engine (TensorRT), an ONNX file (ONNX Runtime), any model file (torch),
    else the FP weights (``weights`` or the default resolution). At most one of engine / onnx / checkpoint."""
    chosen = [n for n, v in (("engine", engine), ("onnx", onnx), ("checkpoint", checkpoint)) if v]
    if len(chosen) > 1:
        raise CompsrtError(f"pass only one of --engine, --onnx, --checkpoint (got {', '.join('--' + c for c in chosen)})")
    if engine:
        from .trt import TrtBackend

        return TrtBackend(engine)
    if onnx:
        return OrtBackend(onnx, providers)
    if checkpoint:
        return torch_checkpoint_backend(checkpoint, device, dtype, compile, cuda_graph)
    return torch_fp_backend(scale, weights, device, dtype, compile, sha256=weights_sha256, cuda_graph=cuda_graph)

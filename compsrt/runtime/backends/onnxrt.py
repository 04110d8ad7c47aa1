"""ONNX Runtime: a session loader and a runner, separate (the runner takes a path or a loaded session)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ...artifacts import read_sidecar, sidecar_tile
from ...errors import CompsrtError
from ..timing import StageTimer
from .base import Backend, Interrupted

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def _has_plugin_nodes(path) -> bool:
    """Whether an ONNX file holds HadamardTransform plugin nodes (the ``--hadamard plugin`` export)."""
    try:
        import onnx

        from ...hadamard import PLUGIN_NAME

        return any(n.op_type == PLUGIN_NAME for n in onnx.load(str(path), load_external_data=False).graph.node)
    except Exception:  # not readable as ONNX: ONNX Runtime's own message says why
        return False


def session_from_onnx(model: str | os.PathLike | bytes, providers: str = "cpu", threads: int | None = None,
                      optimization: str = "all"):
    """An ``onnxruntime.InferenceSession`` for a file or serialized model; one-line errors naming the fix.

    ``optimization="basic"`` keeps Q/DQ pairs as they are: ``"all"`` (ONNX Runtime's default) fuses Q/DQ + MatMul
    into integer kernels (other arithmetic), which parity must not test. Every graph ``compsrt export`` writes loads
    at every level (tests/test_conformance.py).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise CompsrtError("onnxruntime is not installed: `pip install onnxruntime` (or onnxruntime-gpu)") from None
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise CompsrtError(f"ONNX model {model} does not exist; create it with `compsrt export`")
    wanted = PROVIDERS.get(providers)
    if wanted is None:
        raise CompsrtError(f"providers must be cpu or cuda, got {providers}")
    if providers == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise CompsrtError("the CUDA execution provider is not available in this onnxruntime; "
                           "install onnxruntime-gpu or use --providers cpu")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if optimization == "basic":
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own exception types
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        hint = ""
        if "HadamardTransform" in str(exc) or (not isinstance(model, bytes) and _has_plugin_nodes(model)):
            hint = ("; this graph uses the TensorRT plugin op HadamardTransform, which ONNX Runtime cannot run: "
                    "export the ONNX Runtime variant with `compsrt export ... --hadamard matmul`, or build an "
                    "engine from this one and use --engine")
        elif "does not match y_zero_point type" in str(exc):  # activation Q/DQ from an older compsrt export
            hint = ("; this graph's activation quantizers are in the older opset-21 form that ONNX Runtime's graph "
                    "optimizers reject: export it again with `compsrt export`")
        elif "NOT_IMPLEMENTED" in str(exc) and _has_bf16(model):  # --internal-precision bf16
            hint = ("; ONNX Runtime's CPU provider has no BF16 kernels: bf16 internals are for TensorRT (build an "
                    "engine and use --engine), or export with `--internal-precision fp32` or `fp16` for ONNX Runtime")
        name = "the serialized model" if isinstance(model, bytes) else model
        raise CompsrtError(f"ONNX Runtime cannot load {name}: {msg}{hint}") from None


def _has_bf16(model: str | os.PathLike | bytes) -> bool:
    """Whether the graph computes in BF16 (``compsrt export --internal-precision bf16`` casts to it)."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model), load_external_data=False)
    bf16 = onnx.TensorProto.BFLOAT16
    return (any(t.data_type == bf16 for t in proto.graph.initializer)
            or any(a.name == "to" and a.i == bf16 for n in proto.graph.node if n.op_type == "Cast" for a in n.attribute))


class OrtBackend(Backend):
    """ONNX Runtime on the CPU or CUDA execution provider; tile, batch and scale from the graph or its sidecar."""

    name = "onnxruntime"

    def __init__(self, model, providers: str = "cpu", threads: int | None = None, optimization: str = "all"):
        if isinstance(model, (str, os.PathLike)):
            self.path = Path(model)
            self.session = session_from_onnx(self.path, providers, threads, optimization)
            meta = read_sidecar(self.path, fix="re-run `compsrt export`")
        else:  # an already loaded session
            self.path, self.session, meta = None, model, {}
        self.device = providers
        self.providers = self.session.get_providers()
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.in_dtype = np.float16 if "float16" in inp.type else np.float32
        shape = inp.shape
        fixed = all(isinstance(d, int) for d in shape[2:])
        self.tile = (int(shape[2]), int(shape[3])) if fixed else sidecar_tile(meta)
        self.batch = int(shape[0]) if isinstance(shape[0], int) else None
        oshape = out.shape
        if meta.get("scale"):
            self.scale = int(meta["scale"])
        elif fixed and isinstance(oshape[2], int):
            self.scale = int(oshape[2]) // int(shape[2])
        else:
            probe = np.zeros((self.batch or 1, 3, 8, 8), self.in_dtype)
            self.scale = self.session.run([self.output_name], {self.input_name: probe})[0].shape[2] // 8
        self.meta = meta
        self.window = int(meta.get("window_size") or 8)
        import onnxruntime as ort

        self._run_options = ort.RunOptions()  # cancel() sets its terminate flag

    def cancel(self) -> None:
        """ONNX Runtime's own stop: the running ``session.run`` returns early with an error."""
        self._run_options.terminate = True

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            y = self.session.run([self.output_name], {self.input_name: x.astype(self.in_dtype, copy=False)},
                                 self._run_options)[0]
        except Exception:  # any error of a terminated run is the stop, not the input's fault
            if self._run_options.terminate:
                raise Interrupted("interrupted") from None
            raise
        timer.add("compute", time.perf_counter() - t0)
        return np.asarray(y, dtype=np.float32)

    def describe(self) -> dict:
        return super().describe() | {"onnx": str(self.path) if self.path else None, "providers": self.providers,
                                     "mode": self.meta.get("mode"), "precision": self.meta.get("precision_label")}

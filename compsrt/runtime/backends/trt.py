"""TensorRT: an engine loader (sidecar checks, then deserialisation) and a runner, separate.

:func:`load_engine` checks the sidecar against this process (TensorRT flavour and version, device
compute capability, plugin hash) and refuses a mismatch with a one-line message naming the fix,
before TensorRT gets a chance to crash on a foreign plan. :class:`TrtBackend` runs a loaded engine
with pinned host buffers, one CUDA stream and events for h2d / compute / d2h.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...artifacts import ENGINE_FORMAT, read_sidecar
from ...errors import CompsrtError
from ...files import sha256_file
from ..engine import current_device, make_logger, python_plugin_hash, tensorrt
from ..timing import StageTimer
from .base import Backend

log = logging.getLogger(__name__)

REBUILD = "engines must be built with `compsrt build` (its sidecar records the TensorRT version, GPU and plugin); rebuild the engine"


def read_engine_sidecar(engine: Path) -> dict:
    return read_sidecar(engine, ENGINE_FORMAT, required=True, fix=REBUILD)


def check_compatible(meta: dict, trt, device: dict | None, engine: Path) -> None:
    """Raise a CompsrtError naming the fix when ``meta`` (a sidecar) does not match this process."""
    rebuild = f"rebuild it here: compsrt build --onnx {meta.get('onnx', {}).get('path', 'MODEL.onnx')} --out {engine}"
    built = meta["tensorrt"]
    flavor = trt.__name__.split(".")[0]
    if built["module"] != flavor or built["version"] != trt.__version__:
        raise CompsrtError(f"{engine} was built with {built['module']} {built['version']}, this process has "
                           f"{flavor} {trt.__version__}; {rebuild}")
    want = meta.get("device", {}).get("compute_capability")
    if device is not None and want and device.get("compute_capability") and flavor == "tensorrt" \
            and device["compute_capability"] != want:
        raise CompsrtError(f"{engine} was built for {meta['device'].get('name')} (compute capability {want}), this "
                           f"GPU is {device['name']} ({device['compute_capability']}); {rebuild}")
    plugin = meta.get("plugin") or {}
    if plugin.get("kind") == "python" and plugin.get("hash") != python_plugin_hash():
        raise CompsrtError(f"{engine} was built with another version of the Python HadamardTransform plugin "
                           f"(compsrt/plugins changed); {rebuild}")
    if plugin.get("kind") == "library":
        lib = Path(plugin["library"])
        if not lib.is_file():
            raise CompsrtError(f"{engine} needs the plugin library {lib}, which is missing; build it "
                               "(compsrt/plugins/cpp) or rebuild the engine with --plugins python")
        if sha256_file(lib) != plugin.get("hash"):
            raise CompsrtError(f"plugin library {lib} changed since {engine} was built; {rebuild}")


@dataclass
class LoadedEngine:
    path: Path
    trt: object
    runtime: object
    engine: object
    meta: dict


def load_engine(engine: str | os.PathLike, trt=None, check: bool = True) -> LoadedEngine:
    """The loader: sidecar checks, then deserialisation (plugins registered as the sidecar says); clear errors."""
    engine = Path(engine)
    if not engine.is_file():
        raise CompsrtError(f"engine {engine} does not exist; build it with `compsrt build --onnx MODEL.onnx --out {engine}`")
    meta = read_engine_sidecar(engine)
    trt = trt or tensorrt()
    if check:
        check_compatible(meta, trt, current_device(), engine)
    plugin = meta.get("plugin") or {}
    if plugin.get("kind") == "python":
        from ...plugins import register_python_plugin

        register_python_plugin(trt)
    logger = make_logger(trt)
    runtime = trt.Runtime(logger)
    if plugin.get("kind") == "library":
        # The library is serialised into the plan; TensorRT runs that host code only when allowed.
        if hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = True
        registry = runtime.get_plugin_registry() if hasattr(runtime, "get_plugin_registry") else trt.get_plugin_registry()
        try:  # also serialised in the plan; loading it again only matters for older runtimes
            registry.load_library(plugin["library"])
        except Exception as exc:  # noqa: BLE001 - TensorRT's own types; the plan's copy may still serve
            log.warning("could not load the plugin library %s again (%s: %s); using the copy in the plan",
                        plugin["library"], exc.__class__.__name__, exc)
    data = engine.read_bytes()
    if len(data) != meta.get("engine_bytes", len(data)):
        raise CompsrtError(f"{engine} is {len(data)} bytes, its sidecar says {meta['engine_bytes']}: the file is "
                           "truncated or was replaced; rebuild it")
    cuda_engine = runtime.deserialize_cuda_engine(data)
    if cuda_engine is None:
        reason = logger.errors[-1] if logger.errors else "unknown reason"
        if "driver" in reason.lower() or "cuda" in reason.lower():
            raise CompsrtError(f"cannot deserialise {engine}: no usable CUDA device/driver here ({reason.strip()[:200]}); "
                               "run on the GPU machine the engine was built for")
        raise CompsrtError(f"TensorRT cannot deserialise {engine}: {reason.strip()[:300]}; rebuild it with `compsrt build`")
    return LoadedEngine(engine, trt, runtime, cuda_engine, meta)


class TrtBackend(Backend):
    """A TensorRT engine; pinned host buffers, one CUDA stream, events for h2d/compute/d2h."""

    name = "tensorrt"

    def __init__(self, engine: "str | os.PathLike | LoadedEngine", device: int = 0, devmem: str | None = None):
        from ..devmem import open_device

        if isinstance(engine, LoadedEngine):
            self.path, loaded = engine.path, engine
            self.dev = open_device(device, devmem)
        else:
            self.path = Path(engine)
            # Read and check the sidecar before touching CUDA, so a mismatch is reported as such.
            meta = read_engine_sidecar(self.path)
            trt = tensorrt()
            check_compatible(meta, trt, current_device(), self.path)
            self.dev = open_device(device, devmem)
            loaded = load_engine(self.path, trt, check=False)
        self.trt, self.runtime, self.engine, self.meta = loaded.trt, loaded.runtime, loaded.engine, loaded.meta
        trt = self.trt
        self.context = self.engine.create_execution_context()
        self.scale = int(self.meta["scale"])
        self.tile = tuple(self.meta["tile"])
        self.batch = int(self.meta["batch"])
        self.device = f"cuda:{device} ({self.dev.kind})"
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inp = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.out = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
        shape = (self.batch, 3, *self.tile)
        if any(d < 0 for d in self.engine.get_tensor_shape(self.inp)):
            self.context.set_input_shape(self.inp, shape)
        oshape = tuple(self.context.get_tensor_shape(self.out))
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.inp)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out)))
        self.h_in = self.dev.pinned(shape, self.in_dtype)
        self.h_out = self.dev.pinned(oshape, self.out_dtype)
        self.d_in = self.dev.alloc(self.h_in.nbytes)
        self.d_out = self.dev.alloc(self.h_out.nbytes)
        self.context.set_tensor_address(self.inp, self.d_in)
        self.context.set_tensor_address(self.out, self.d_out)
        self.ev = [self.dev.event() for _ in range(4)]
        free, total = self.dev.mem_info()
        self._mem_used = total - free

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        dev, ev = self.dev, self.ev
        self.h_in[...] = x  # cast to the engine's input dtype (strongly typed: as exported)
        dev.record(ev[0])
        dev.htod_async(self.d_in, self.h_in)
        dev.record(ev[1])
        if not self.context.execute_async_v3(dev.stream_handle):
            raise CompsrtError(f"TensorRT execution of {self.path} failed")
        dev.record(ev[2])
        dev.dtoh_async(self.h_out, self.d_out)
        dev.record(ev[3])
        dev.synchronize()
        timer.add("h2d", dev.elapsed_s(ev[0], ev[1]))
        timer.add("compute", dev.elapsed_s(ev[1], ev[2]))
        timer.add("d2h", dev.elapsed_s(ev[2], ev[3]))
        return self.h_out.astype(np.float32, copy=True)

    def memory(self) -> dict:
        free, total = self.dev.mem_info()
        self._mem_used = max(self._mem_used, total - free)
        return {"device_peak_bytes": int(self.engine.device_memory_size_v2 if hasattr(self.engine, "device_memory_size_v2")
                                         else self.engine.device_memory_size) + self.h_in.nbytes + self.h_out.nbytes,
                "device_used_bytes": int(self._mem_used)}

    def describe(self) -> dict:
        return super().describe() | {"engine": str(self.path), "tensorrt": self.meta["tensorrt"], "devmem": self.dev.kind}

    def close(self) -> None:
        self.dev.free(self.d_in)
        self.dev.free(self.d_out)

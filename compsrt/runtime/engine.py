"""Building TensorRT engines from exported ONNX, and loading them back safely.

``build_engine`` uses ``tensorrt`` where present, else ``tensorrt_rtx`` (TensorRT for RTX, which
builds on a machine without a GPU). Beside ``engine.plan`` it writes:

* ``engine.plan.json``: the sidecar (format, TensorRT module and version, device name and compute
  capability, plugin kind/hash, tile, scale, batch, tensor names, precision, sparsity, ONNX hash);
* ``engine.plan.build.log``: the builder log;
* ``engine.plan.layers.json``: the engine inspector's layer information (precision, tactic), when
  the engine can be deserialised on the build machine (not on a machine without a GPU).

``load_engine`` checks the sidecar against this process (TensorRT flavour and version, device
compute capability, plugin hash) and refuses a mismatch with a one-line message naming the fix,
before TensorRT gets a chance to crash on a foreign plan.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CompsrtError
from ..files import atomic_path, atomic_write_bytes, atomic_write_text, publish, sha256_file
from .backends import Backend, _sidecar_tile, read_onnx_sidecar
from .timing import StageTimer

SIDECAR_FORMAT = "compsrt-engine/1"
PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def python_plugin_hash() -> str:
    """sha256 over the Python plugin's sources (kernel included), in a fixed order."""
    h = hashlib.sha256()
    files = sorted([*PLUGIN_DIR.glob("*.py"), *PLUGIN_DIR.glob("csrc/*")])
    for f in files:
        if f.is_file():
            h.update(f.relative_to(PLUGIN_DIR).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _trt():
    """``tensorrt``, else ``tensorrt_rtx``, as a user-facing error when neither imports."""
    from ..plugins.trt_compat import import_tensorrt

    try:
        return import_tensorrt()
    except ImportError as exc:
        raise CompsrtError(str(exc).split(" (")[0]) from None


def _make_logger(trt, log_file: Path | None, echo_errors: bool = True):
    class FileLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []
            self.errors: list[str] = []
            self.fh = open(log_file, "w") if log_file else None

        def log(self, severity, msg):
            line = f"[{str(severity).split('.')[-1]}] {msg}"
            self.lines.append(line)
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
            if self.fh:
                self.fh.write(line + "\n")
                self.fh.flush()

        def close(self):
            if self.fh:
                self.fh.close()
                self.fh = None

    return FileLogger()


def find_24_sparse(onnx_path: Path) -> list[str]:
    """Names of initializers (2-D+, >= 1024 values) that are 2:4 sparse along their input axis."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    convs = {n.input[1] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1}
    found = []
    for init in model.graph.initializer:
        if len(init.dims) < 2 or int(np.prod(init.dims)) < 1024 or init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        w = numpy_helper.to_array(init)
        if w.dtype.kind not in "fi":
            continue
        # Conv weights (O, I, kh, kw): groups of 4 along I; MatMul/Gemm (K, N): groups of 4 along K.
        a = np.moveaxis(w, 1, -1) if init.name in convs else np.moveaxis(w, 0, -1)
        if a.shape[-1] % 4:
            continue
        zeros = (a.reshape(-1, 4) == 0).sum(axis=1)
        if (zeros >= 2).all() and (zeros < 4).any():
            found.append(init.name)
    return found


def current_device() -> dict:
    from .devmem import current_device_info

    info = current_device_info()
    if info is None:
        return {"name": None, "compute_capability": None}
    return {"name": info[0], "compute_capability": info[1]}


@dataclass
class BuildResult:
    engine: Path
    sidecar: dict
    seconds: float


def build_engine(onnx_path, out, sparse: bool = False, plugins: str | None = "python",
                 timing_cache=None, workspace_mb: int | None = None, batch: int | None = None,
                 tile: int | None = None, compute_capability: str | None = None) -> BuildResult:
    """Build ``out`` from ``onnx_path``; see the module docstring for the files written beside it."""
    onnx_path, out = Path(onnx_path), Path(out)
    from ..export.inspect import load_onnx

    load_onnx(onnx_path, external_data=False)  # a clear error for a non-ONNX file, before TensorRT sees it
    trt = _trt()
    flavor = trt.__name__.split(".")[0]
    meta = read_onnx_sidecar(onnx_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_name(out.name + ".build.log")
    # The log is written beside the engine under a temporary name and kept only when it explains
    # something: a built engine, or TensorRT's builder failing on a graph it parsed.
    fd, log_tmp = tempfile.mkstemp(prefix=f".{log_path.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    logger = _make_logger(trt, Path(log_tmp))
    keep_log = False
    t0 = time.perf_counter()
    try:
        builder = trt.Builder(logger)
        plugin = _setup_plugins(trt, builder, plugins)
        flags = 0
        strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
        if strongly_typed:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            hint = ""
            if "HadamardTransform" in errs or "plugin" in errs.lower():
                hint = " (the graph needs the HadamardTransform plugin: pass --plugins python or --plugins path/to/libcompsrt_plugins.so)"
            raise CompsrtError(f"TensorRT cannot parse {onnx_path}: {errs[:500]}{hint}")
        config = builder.create_builder_config()
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if hasattr(trt, "ProfilingVerbosity"):
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if plugin.get("library"):
            config.plugins_to_serialize = [plugin["library"]]
        sparse_tensors = find_24_sparse(onnx_path)
        use_sparse = bool(sparse or sparse_tensors or meta.get("sparse"))
        if use_sparse:
            config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
        if compute_capability and hasattr(trt, "ComputeCapability"):
            cc = getattr(trt.ComputeCapability, compute_capability.upper().replace(".", ""), None)
            if cc is None:
                raise CompsrtError(f"unknown compute capability {compute_capability}; one of "
                                   f"{', '.join(trt.ComputeCapability.__members__)}")
            config.num_compute_capabilities = 1
            config.set_compute_capability(cc, 0)
        cache_file = Path(timing_cache) if timing_cache else None
        cache_note = str(cache_file) if cache_file else None
        if cache_file is not None and flavor == "tensorrt_rtx":
            cache_file, cache_note = None, "ignored: TensorRT-RTX has no timing cache (its runtime cache is used at run time)"
        if cache_file is not None:
            blob = cache_file.read_bytes() if cache_file.is_file() else b""
            cache = config.create_timing_cache(blob)
            config.set_timing_cache(cache, ignore_mismatch=False)
        # Inputs and the optimisation profile (only needed when the graph has dynamic dims).
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        outputs = [network.get_output(i) for i in range(network.num_outputs)]
        fixed_tile = _sidecar_tile(meta) or ((tile, tile) if isinstance(tile, int) and tile else tile or None)
        inp_shape = list(inputs[0].shape)
        image_graph = len(inp_shape) == 4
        if any(d < 0 for d in inp_shape) and image_graph:
            b = batch or (meta.get("batch") if isinstance(meta.get("batch"), int) else None) or 1
            th, tw = fixed_tile or (None, None)
            shape = [b if inp_shape[0] < 0 else inp_shape[0], inp_shape[1],
                     th if inp_shape[2] < 0 else inp_shape[2], tw if inp_shape[3] < 0 else inp_shape[3]]
            if None in shape:
                raise CompsrtError(f"{onnx_path} has dynamic spatial dims; pass --tile or export with a fixed tile")
            profile = builder.create_optimization_profile()
            profile.set_shape(inputs[0].name, shape, shape, shape)
            config.add_optimization_profile(profile)
            inp_shape = shape
        serialized = builder.build_serialized_network(network, config)
        keep_log = True
        if serialized is None:
            raise CompsrtError(f"TensorRT could not build {onnx_path}: {'; '.join(logger.errors[-3:]) or 'see ' + str(log_path)}")
        atomic_write_bytes(out, bytes(memoryview(serialized)))
        if cache_file is not None:
            atomic_write_bytes(cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
        seconds = time.perf_counter() - t0
        layers = _inspect(trt, logger, serialized)
        atomic_write_text(out.with_name(out.name + ".layers.json"), json.dumps(layers, indent=1))
        out_shape = list(outputs[0].shape)
        scale = meta.get("scale") or (out_shape[2] // inp_shape[2] if image_graph and out_shape[2] > 0 else None)
        dev = current_device()
        if flavor == "tensorrt_rtx" and compute_capability:
            dev["target_compute_capability"] = compute_capability
        sidecar = {
            "format": SIDECAR_FORMAT,
            "tensorrt": {"module": flavor, "version": trt.__version__},
            "device": dev,
            "plugin": plugin,
            "tile": [int(inp_shape[2]), int(inp_shape[3])] if image_graph else None,
            "batch": int(inp_shape[0]),
            "input_shape": [int(d) for d in inp_shape],
            "scale": int(scale) if scale else None,
            "inputs": [i.name for i in inputs],
            "outputs": [o.name for o in outputs],
            "input_dtype": str(inputs[0].dtype).split(".")[-1],
            "precision": meta.get("precision"),
            "strongly_typed": strongly_typed,
            "sparse_weights": use_sparse,
            "sparse_tensors": len(sparse_tensors),
            "workspace_mb": workspace_mb,
            "timing_cache": cache_note,
            "onnx": {"path": str(onnx_path), "sha256": sha256_file(onnx_path)},
            "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(seconds, 3),
            "engine_bytes": out.stat().st_size,
            "layers_file": out.name + ".layers.json",
            "log_file": log_path.name,
        }
        atomic_write_text(sidecar_path(out), json.dumps(sidecar, indent=1))
        return BuildResult(out, sidecar, seconds)
    finally:
        logger.close()
        if keep_log:
            publish(log_tmp, log_path)
        Path(log_tmp).unlink(missing_ok=True)


def _setup_plugins(trt, builder, plugins: str | None) -> dict:
    if plugins in (None, "none"):
        return {"kind": "none", "hash": None}
    if plugins == "python":
        from ..plugins import register_python_plugin

        ok = register_python_plugin(trt)
        if not ok:
            raise CompsrtError("could not register the Python HadamardTransform plugin (another creator with the "
                               "same name is registered? do not load libcompsrt_plugins.so in the same process)")
        return {"kind": "python", "hash": python_plugin_hash(), "library": None}
    lib = Path(plugins)
    if not lib.is_file():
        raise CompsrtError(f"plugin library {lib} does not exist; build it (compsrt/plugins/cpp) or pass --plugins python")
    registry = builder.get_plugin_registry() if hasattr(builder, "get_plugin_registry") else trt.get_plugin_registry()
    try:
        handle = registry.load_library(str(lib))
    except Exception as exc:
        raise CompsrtError(f"cannot load plugin library {lib}: {exc}; rebuild it against this TensorRT") from None
    if handle is None:
        raise CompsrtError(f"cannot load plugin library {lib}; rebuild it against this TensorRT ({trt.__version__})")
    return {"kind": "library", "hash": sha256_file(lib), "library": str(lib.resolve())}


def _inspect(trt, logger, serialized) -> dict:
    """The inspector's per-layer JSON (precision, tactic) if the plan deserialises here."""
    try:
        runtime = trt.Runtime(logger)
        n_err = len(logger.errors)
        engine = runtime.deserialize_cuda_engine(serialized)
        if engine is None:
            reason = "; ".join(logger.errors[n_err:][-1:]) or "deserialisation failed"
            return {"available": False, "reason": f"engine not deserialisable on the build machine: {reason}"}
        insp = engine.create_engine_inspector()
        info = json.loads(insp.get_engine_information(trt.LayerInformationFormat.JSON))
        return {"available": True, **info}
    except Exception as exc:
        return {"available": False, "reason": f"{exc.__class__.__name__}: {exc}"}


# ------------------------------------------------------------------------------------------ loading
def read_sidecar(engine: Path) -> dict:
    p = sidecar_path(engine)
    if not p.is_file():
        raise CompsrtError(f"{p} is missing: engines must be built with `compsrt build` (its sidecar records the "
                           "TensorRT version, GPU and plugin); rebuild the engine")
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise CompsrtError(f"engine sidecar {p} is unreadable ({exc}); rebuild the engine with `compsrt build`") from None
    if meta.get("format") != SIDECAR_FORMAT:
        raise CompsrtError(f"{p} has format {meta.get('format')!r}, expected {SIDECAR_FORMAT}; rebuild with `compsrt build`")
    return meta


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


def deserialize(engine: Path, trt=None, check: bool = True):
    """(trt module, runtime, ICudaEngine, sidecar) after the compatibility checks; clear errors otherwise."""
    engine = Path(engine)
    if not engine.is_file():
        raise CompsrtError(f"engine {engine} does not exist; build it with `compsrt build --onnx MODEL.onnx --out {engine}`")
    meta = read_sidecar(engine)
    trt = trt or _trt()
    if check:
        check_compatible(meta, trt, current_device(), engine)
    plugin = meta.get("plugin") or {}
    if plugin.get("kind") == "python":
        from ..plugins import register_python_plugin

        register_python_plugin(trt)
    logger = _make_logger(trt, None)
    runtime = trt.Runtime(logger)
    if plugin.get("kind") == "library":
        # The library is serialised into the plan; TensorRT runs that host code only when allowed.
        if hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = True
        registry = runtime.get_plugin_registry() if hasattr(runtime, "get_plugin_registry") else trt.get_plugin_registry()
        try:  # also serialised in the plan; loading it again only matters for older runtimes
            registry.load_library(plugin["library"])
        except Exception:
            pass
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
    return trt, runtime, cuda_engine, meta


class TrtBackend(Backend):
    """A TensorRT engine; pinned host buffers, one CUDA stream, events for h2d/compute/d2h."""

    name = "tensorrt"

    def __init__(self, engine: str | os.PathLike, device: int = 0, devmem: str | None = None):
        from .devmem import open_device

        self.path = Path(engine)
        # Read and check the sidecar before touching CUDA, so a mismatch is reported as such.
        meta = read_sidecar(self.path)
        trt = _trt()
        check_compatible(meta, trt, current_device(), self.path)
        self.dev = open_device(device, devmem)
        self.trt, self.runtime, self.engine, self.meta = deserialize(self.path, trt, check=False)
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

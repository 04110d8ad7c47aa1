"""The one TensorRT build module: parse an exported ONNX, build an engine, one logger for both.

``build_engine`` (``compsrt build``) uses ``tensorrt`` where present, else ``tensorrt_rtx`` (TensorRT
for RTX, which builds on a machine without a GPU). Beside ``engine.plan`` it writes:

* ``engine.plan.json``: the sidecar (format, TensorRT module and version, device name and compute
  capability, plugin kind/hash, tile, scale, batch, tensor names, precision, sparsity, ONNX hash);
* ``engine.plan.build.log``: the builder log;
* ``engine.plan.layers.json``: the engine inspector's layer information (precision, tactic), when
  the engine can be deserialised on the build machine (not on a machine without a GPU).

``parse_and_build`` (``compsrt export-check``) is the export's check: parse, count layers and
INT8 tensors, optionally build, report. Loading engines back is :mod:`compsrt.runtime.backends.trt`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import ENGINE_FORMAT, read_sidecar, sidecar_tile, write_sidecar
from ..errors import CompsrtError
from ..files import atomic_write_bytes, atomic_write_text, publish, sha256_file

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins"


def python_plugin_hash() -> str:
    """sha256 over the Python plugin's sources (kernel included), in a fixed order."""
    h = hashlib.sha256()
    files = sorted([*PLUGIN_DIR.glob("*.py"), *PLUGIN_DIR.glob("csrc/*")])
    for f in files:
        if f.is_file():
            h.update(f.relative_to(PLUGIN_DIR).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def tensorrt():
    """``tensorrt``, else ``tensorrt_rtx``, as a user-facing error when neither imports."""
    from ..plugins.trt_compat import import_tensorrt

    try:
        return import_tensorrt()
    except ImportError as exc:
        raise CompsrtError(str(exc).split(" (")[0]) from None


def make_logger(trt, log_file: Path | None = None, min_severity=None):
    """The one TensorRT logger: keeps ``errors`` (always) and ``lines`` down to ``min_severity`` (default all),
    mirrored into ``log_file`` when given."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []
            self.errors: list[str] = []
            self.fh = open(log_file, "w") if log_file else None

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
            if min_severity is not None and severity > min_severity:
                return
            line = f"[{str(severity).split('.')[-1]}] {msg}"
            self.lines.append(line)
            if self.fh:
                self.fh.write(line + "\n")
                self.fh.flush()

        def close(self):
            if self.fh:
                self.fh.close()
                self.fh = None

    return Logger()


def create_network(trt, builder):
    """A network definition, strongly typed where this TensorRT has the flag; (network, strongly_typed)."""
    flags = 0
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return builder.create_network(flags), strongly_typed


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
    trt = tensorrt()
    flavor = trt.__name__.split(".")[0]
    meta = read_sidecar(onnx_path, fix="re-run `compsrt export`")
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_name(out.name + ".build.log")
    # The log is written beside the engine under a temporary name and kept only when it explains
    # something: a built engine, or TensorRT's builder failing on a graph it parsed.
    fd, log_tmp = tempfile.mkstemp(prefix=f".{log_path.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    logger = make_logger(trt, Path(log_tmp))
    keep_log = False
    t0 = time.perf_counter()
    try:
        require_plugins(onnx_path, plugins)
        builder = trt.Builder(logger)
        plugin = _setup_plugins(trt, builder, plugins)
        network, strongly_typed = create_network(trt, builder)
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
        fixed_tile = sidecar_tile(meta) or ((tile, tile) if isinstance(tile, int) and tile else tile or None)
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
            "format": ENGINE_FORMAT,
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
        write_sidecar(out, sidecar)
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
    from ..plugins.trt_compat import ensure_rtx_library_alias

    if ensure_rtx_library_alias(trt) == "missing":  # the RTX parser would abort on the plugin node
        raise CompsrtError("TensorRT-RTX: libtensorrt_rtx.so is missing next to libtensorrt_rtx.so.1 and cannot be "
                           "created; see docs/plugins.md (make_rtx_library_alias_dir + LD_LIBRARY_PATH)")
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


# ------------------------------------------------------------------------------ the export's check
@dataclass
class BuildReport:
    flavor: str
    version: str
    parsed: bool
    built: bool
    parse_errors: list[str] = field(default_factory=list)
    build_errors: list[str] = field(default_factory=list)
    plugin_registered: bool | None = None
    layers: int = 0
    layer_types: dict[str, int] = field(default_factory=dict)
    int8_tensors: int = 0
    quantize_layers: int = 0
    dequantize_layers: int = 0
    plugin_layers: int = 0
    engine_bytes: int = 0
    seconds: float = 0.0
    log: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "log"}


def plugin_ops(onnx_path: str | os.PathLike) -> dict[str, int]:
    """``{"namespace::op": node count}`` of the custom-domain nodes of a graph: what needs a TensorRT plugin."""
    from ..export.inspect import load_onnx

    found: dict[str, int] = {}
    for n in load_onnx(onnx_path, external_data=False).graph.node:
        if n.domain not in ("", "ai.onnx"):
            key = f"{n.domain}::{n.op_type}"
            found[key] = found.get(key, 0) + 1
    return found


def require_plugins(onnx_path: str | os.PathLike, plugins: str | None) -> None:
    """Refuse a graph with plugin nodes when no plugin is loaded, before TensorRT's parser (which reports one
    "Plugin not found" error per node and no fix)."""
    if plugins not in (None, "none"):
        return
    ops = plugin_ops(onnx_path)
    if ops:
        names = ", ".join(f"{k} ({v} nodes)" for k, v in ops.items())
        raise CompsrtError(f"{onnx_path} needs the TensorRT plugin {names}: pass --plugins python (the Python "
                           "plugin) or --plugins PATH (a plugin library such as libcompsrt_plugins.so from "
                           "compsrt/plugins/cpp)")


def _collapse(errors: list[str]) -> list[str]:
    """Identical messages once each, with their count (the parser repeats one error per node)."""
    counts: dict[str, int] = {}
    for e in errors:
        counts[e] = counts.get(e, 0) + 1
    return [e if n == 1 else f"{e} (x{n})" for e, n in counts.items()]


def parse_and_build(onnx_path: str | os.PathLike, *, plugins: str | None = None, build: bool = True,
                    verbose: bool = False, engine_out: str | os.PathLike | None = None,
                    max_batch: int = 4) -> BuildReport:
    """Parse ``onnx_path`` into a (strongly typed) network and optionally build a serialized engine.

    ``plugins``: python (register the Python plugin), None / none, or the path of a plugin library.
    """
    from ..plugins.trt_compat import tensorrt_flavor

    trt = tensorrt()
    sev = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING
    logger = make_logger(trt, min_severity=sev)
    report = BuildReport(tensorrt_flavor(trt), getattr(trt, "__version__", "?"), False, False, log=logger.lines)
    start = time.perf_counter()
    builder = trt.Builder(logger)
    if plugins not in (None, "none"):
        report.plugin_registered = _setup_plugins(trt, builder, plugins)["kind"] != "none"
    network, _ = create_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    report.parsed = bool(parser.parse_from_file(str(onnx_path)))
    report.parse_errors = _collapse([str(parser.get_error(i).desc()) for i in range(parser.num_errors)])
    if report.parsed:
        report.layers = network.num_layers
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            t = str(layer.type).split(".")[-1]
            report.layer_types[t] = report.layer_types.get(t, 0) + 1
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype == trt.DataType.INT8:
                    report.int8_tensors += 1
        report.quantize_layers = report.layer_types.get("QUANTIZE", 0)
        report.dequantize_layers = report.layer_types.get("DEQUANTIZE", 0)
        report.plugin_layers = report.layer_types.get("PLUGIN_V3", 0) + report.layer_types.get("PLUGIN_V2", 0)
    if report.parsed and build:
        config = builder.create_builder_config()
        dynamic = [network.get_input(i) for i in range(network.num_inputs)
                   if any(d < 0 for d in network.get_input(i).shape)]
        if dynamic:  # dynamic batch: profile for 1..max_batch
            profile = builder.create_optimization_profile()
            for t in dynamic:
                dims = list(t.shape)
                lo = [1 if d < 0 else d for d in dims]
                hi = [max_batch if d < 0 else d for d in dims]
                profile.set_shape(t.name, lo, lo, hi)
            config.add_optimization_profile(profile)
        engine = builder.build_serialized_network(network, config)
        report.built = engine is not None
        if engine is not None:
            report.engine_bytes = int(engine.nbytes)
            if engine_out is not None:
                atomic_write_bytes(engine_out, bytes(engine))
        else:
            errors = [ln for ln in logger.lines if ln.startswith(("[ERROR]", "[INTERNAL_ERROR]"))]
            report.build_errors = _collapse(errors)
    report.seconds = time.perf_counter() - start
    return report

"""Parse and build an exported ONNX graph with TensorRT (TensorRT-RTX builds engines on CPU-only hosts)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CompsrtError


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
        d = {k: v for k, v in vars(self).items() if k != "log"}
        return d


def _make_logger(trt, lines: list[str], min_severity):
    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            if severity <= min_severity:
                lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return _Logger()


def parse_and_build(onnx_path: str | os.PathLike, *, register_plugin: bool = False, build: bool = True,
                    verbose: bool = False, engine_out: str | os.PathLike | None = None,
                    max_batch: int = 4) -> BuildReport:
    """Parse ``onnx_path`` into a (strongly typed) network and optionally build a serialized engine."""
    from ..plugins.trt_compat import TensorRTUnavailableError, import_tensorrt, tensorrt_flavor

    try:
        trt = import_tensorrt()
    except TensorRTUnavailableError as exc:
        raise CompsrtError(str(exc)) from None
    lines: list[str] = []
    sev = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING
    logger = _make_logger(trt, lines, sev)
    report = BuildReport(tensorrt_flavor(trt), getattr(trt, "__version__", "?"), False, False, log=lines)
    if register_plugin:
        from ..plugins import register_python_plugin

        report.plugin_registered = bool(register_python_plugin(trt))
    start = time.perf_counter()
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    report.parsed = bool(parser.parse_from_file(str(onnx_path)))
    report.parse_errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
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
                Path(engine_out).write_bytes(bytes(engine))
        else:
            report.build_errors = [ln for ln in lines if ln.startswith(("[ERROR]", "[INTERNAL_ERROR]"))]
    report.seconds = time.perf_counter() - start
    return report


def int8_layer_lines(report: BuildReport) -> list[str]:
    """Verbose-log lines in which the builder mentions INT8 kernels or Q/DQ fusions (if it says)."""
    pat = re.compile(r"(int8|Int8|INT8|QuantizeLinear|DequantizeLinear|Q/DQ|fus)", re.I)
    return [ln for ln in report.log if pat.search(ln)]

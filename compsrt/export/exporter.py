"""From a model file (FP SwinIR-light .pth, or a CompSRT deploy-mode checkpoint / pack) to ONNX + sidecar JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

from ..artifacts import INPUT_NAME, ONNX_FORMAT, OUTPUT_NAME, write_sidecar
from ..errors import CompsrtError
from ..files import atomic_path, sha256_file
from ..hadamard import PLUGIN_VERSION
from ..models.limits import tile_limit_error
from ..models.precision import INTERNAL_PRECISIONS, InternalPrecision
from .graph import StaticSwinIR, trace_to_onnx
from .precision import check_fp16_guard, read_ranges
from .surgery import (HADAMARD_VARIANTS, PLUGIN_DOMAIN, PLUGIN_OP, PLUGIN_VARIANTS, compact_constants, int4_site,
                      int8_by_attribute, remove_identities, replace_markers, to_plugin)

LEGACY_MAX_OPSET = 20  # the TorchScript exporter; higher opsets go through onnx.version_converter
IO_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
INT4_BLOCKS = (64, 128)
WEIGHT_STORAGE = ("auto", "int4", "int8")
ACTIVATIONS = ("quantized", "fp")  # fp: weight-only (no activation Q/DQ; TensorRT runs FP activations, INT4/INT8 weights)
INT4_OPSET = 21  # the first opset with INT4 tensors


@dataclass
class ExportOptions:
    tile: tuple[int, int] = (64, 64)
    batch: int | None = 1  # None: dynamic
    hadamard: str = "matmul"
    opset: int = 17
    io_dtype: str = "fp32"
    int4_block: int | None = None  # 64/128: INT4 weights in blocks along K instead of per channel
    weights: str = "auto"  # auto/int4: <= 4-bit weight codes as INT4 (opset >= 21); int8: INT8 containers
    activations: str = "quantized"  # fp: weight-only, the checkpoint's activation quantizers are left out
    internal: str = "fp32"  # bf16/fp16: the unquantized operations (compsrt.models.precision) in that dtype

    def validate(self) -> None:
        if self.hadamard not in HADAMARD_VARIANTS:
            raise CompsrtError(f"--hadamard must be one of {HADAMARD_VARIANTS}, got {self.hadamard!r}")
        if self.io_dtype not in IO_DTYPES:
            raise CompsrtError(f"--precision must be one of {tuple(IO_DTYPES)}, got {self.io_dtype!r}")
        if self.opset < 17:
            raise CompsrtError(f"--opset must be >= 17 (LayerNormalization, per-axis Q/DQ), got {self.opset}")
        if self.weights not in WEIGHT_STORAGE:
            raise CompsrtError(f"--weights must be one of {WEIGHT_STORAGE}, got {self.weights!r}")
        if self.int4_block is not None:
            if self.int4_block not in INT4_BLOCKS:
                raise CompsrtError(f"--int4-block must be one of {INT4_BLOCKS}, got {self.int4_block}")
            if self.weights == "int8":
                raise CompsrtError("--int4-block stores weights as INT4; it contradicts --weights int8")
        if self.activations not in ACTIVATIONS:
            raise CompsrtError(f"--activations must be one of {ACTIVATIONS}, got {self.activations!r}")
        if self.activations == "fp" and self.hadamard == "fused-quant":
            raise CompsrtError("--activations fp leaves no activation quantizer for --hadamard fused-quant to fuse: "
                               "use --hadamard matmul or plugin")
        if self.internal not in INTERNAL_PRECISIONS:
            raise CompsrtError(f"--internal-precision must be one of {INTERNAL_PRECISIONS}, got {self.internal!r}")
        if self.batch is not None and self.batch < 1:
            raise CompsrtError(f"--batch must be a positive integer or 'dynamic', got {self.batch}")
        too_large = tile_limit_error(tuple(self.tile), self.batch or 1)
        if too_large:  # before any tensor of that size is allocated
            raise CompsrtError(too_large)


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: dict
    model: onnx.ModelProto = field(repr=False)


# -- export --------------------------------------------------------------------------------------
def _finish(graph: gs.Graph) -> onnx.ModelProto:
    graph.cleanup().toposort()
    return gs.export_onnx(graph)


def _set_opset(model: onnx.ModelProto, opset: int, custom: dict[str, int]) -> onnx.ModelProto:
    if opset > LEGACY_MAX_OPSET:
        model = onnx.version_converter.convert_version(model, opset)
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    for domain, version in custom.items():
        model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    # the oldest IR version that carries this opset (readers such as ONNX Runtime lag behind onnx)
    model.ir_version = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10}.get(opset, 10)
    return model


def build_onnx(model: nn.Module, opts: ExportOptions, meta: dict | None = None) -> tuple[onnx.ModelProto, dict]:
    """The exported ONNX model (in memory) and the sidecar dict."""
    opts.validate()
    meta = dict(meta or {})
    cfg = getattr(model, "quant_config", None)
    if cfg is not None:
        meta.setdefault("bits", cfg.bits)
        meta.setdefault("mode", cfg.mode)
        meta.setdefault("prune", cfg.prune)
    internal = InternalPrecision.of(opts.internal)
    guard = check_fp16_guard(meta.get("activation_ranges"), internal, meta.get("ranges_source", "checkpoint"))
    static = StaticSwinIR(model.eval(), opts.tile, IO_DTYPES[opts.io_dtype], internal)
    quantized = bool(static.sites)
    has_int4 = any(int4_site(s) for s in static.sites)
    if (opts.weights == "int4" or opts.int4_block) and not has_int4:
        raise CompsrtError("INT4 weights (--weights int4 / --int4-block) need weights of at most 4 bits; "
                           "this checkpoint has none")
    int4 = has_int4 and opts.weights != "int8"
    int4_layout = (opts.int4_block or 0) if int4 else None  # 0: per output channel
    opset = max(opts.opset, INT4_OPSET) if int4 else opts.opset
    proto = trace_to_onnx(static, opts.batch, min(opts.opset, LEGACY_MAX_OPSET))
    graph = gs.import_onnx(proto)
    remove_identities(graph)
    fp_acts = opts.activations == "fp"
    builder = replace_markers(graph, static.sites, int4_layout, fp_acts) if quantized else None
    remove_identities(graph)
    graph.fold_constants()  # onnx-graphsurgeon folds with onnxruntime (a requirement); a failure is an export bug
    compact_constants(graph, static.constants)  # after folding, which would expand them again
    proto = _finish(graph)
    proto = _set_opset(proto, opset, {})
    int8_by_attribute(proto)  # opset >= 21: the activation Q/DQ form ONNX Runtime's optimizers accept
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    n_plugin = 0
    if opts.hadamard in PLUGIN_VARIANTS and quantized:
        graph = gs.import_onnx(proto)
        # re-find the Hadamard MatMuls by name (records point into the old graph)
        names = {r.node.name: r for r in builder.hadamards}
        nodes = {n.name: n for n in graph.nodes}
        for r in builder.hadamards:
            r.node = nodes[r.node.name]
        n_plugin = to_plugin(graph, list(names.values()), builder.quants if opts.hadamard == "fused-quant" else None)
        proto = gs.export_onnx(graph)
        proto = _set_opset(proto, opset, {PLUGIN_DOMAIN: 1})
    onnx.checker.check_model(proto, full_check=not n_plugin)
    bits = int(meta.get("bits", 32)) if quantized else 32
    a_bits = (lambda s: None) if fp_acts else (lambda s: int(s.bits))  # None: FP activations (no Q/DQ)
    bits_by_site = {s.name: ({"w": int(s.extra["w_bits"]), "a": a_bits(s)} if s.kind == "linear" else {"a": a_bits(s)})
                    for s in static.sites}
    n_int4 = sum(int4_site(s) for s in static.sites) if int4 else 0
    io = opts.io_dtype
    matmul_precision = None if not quantized else (
        "fp32 activations x dequantized weights (weight-only)" if fp_acts else
        "int8 codes from the quantizing Hadamard plugin + DQ" if opts.hadamard == "fused-quant" else "int8 Q/DQ")
    label = getattr(cfg, "label", None) if quantized else None
    sidecar = {
        "format": ONNX_FORMAT,
        "model": "swinir-light",
        "scale": int(model.scale),
        "tile": [int(opts.tile[0]), int(opts.tile[1])],
        "output_tile": [int(opts.tile[0] * model.scale), int(opts.tile[1] * model.scale)],
        "window_size": int(model.window_size),
        "batch": "dynamic" if opts.batch is None else int(opts.batch),
        "input": {"name": INPUT_NAME, "dtype": "float16" if io == "fp16" else "float32",
                  "layout": "NCHW", "range": [0.0, 1.0], "channels": "RGB"},
        "output": {"name": OUTPUT_NAME, "dtype": "float16" if io == "fp16" else "float32",
                   "layout": "NCHW", "range": "unclamped, clamp to [0, 1]"},
        "precision": {"io": io, "internal": internal.name, "internal_fp32_kinds": internal.kept_fp32(),
                      "fp16_guard": guard,
                      "quantized_matmuls": matmul_precision,
                      # what TensorRT executes: every activation Q/DQ in INT8 (b-bit grids clipped inside it),
                      # weights as INT4 (weight-only) or INT8 initialisers
                      "weight_storage": ({"int4": n_int4, "int8": sum(s.kind == "linear" for s in static.sites) - n_int4}
                                         if quantized else None),
                      "int4_weights": ({"layout": "block" if int4_layout else "per_channel",
                                        "block_size": int4_layout or None,
                                        "sites": n_int4} if int4 else None)},
        "bits": bits,
        "wbits": getattr(cfg, "wbits", None) if quantized else None,
        "abits": getattr(cfg, "abits", None) if quantized and not fp_acts else None,
        "activations": ("fp" if fp_acts else "quantized") if quantized else None,
        "precision_label": f"{label}, FP activations" if label and fp_acts else label,
        "site_bits": bits_by_site or None,
        "mode": meta.get("mode", "fp") if quantized else "fp",
        "prune": meta.get("prune"),
        "hadamard": opts.hadamard if quantized else None,
        "plugin": ({"name": PLUGIN_OP, "version": PLUGIN_VERSION, "namespace": PLUGIN_DOMAIN, "nodes": n_plugin}
                   if n_plugin else None),
        "opset": int(opset),
        "quant_sites": len(static.sites),
        "parameters": parameter_counts(model, static.sites),
        "checkpoint": meta.get("checkpoint"),
        "checkpoint_sha256": meta.get("checkpoint_sha256"),
    }
    for key, value in {
        "compsrt.scale": sidecar["scale"], "compsrt.bits": bits, "compsrt.mode": sidecar["mode"],
        "compsrt.tile": f"{opts.tile[0]}x{opts.tile[1]}", "compsrt.batch": sidecar["batch"],
        "compsrt.precision": io, "compsrt.quant": sidecar["precision_label"] or "none",
        "compsrt.hadamard": sidecar["hadamard"] or "none",
        "compsrt.plugin": PLUGIN_OP if n_plugin else "none",
        "compsrt.checkpoint_sha256": sidecar["checkpoint_sha256"] or "none",
        "compsrt.sidecar": json.dumps(sidecar, sort_keys=True),
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.producer_name, proto.producer_version = "compsrt.export", "1"
    proto.doc_string = f"SwinIR-light x{sidecar['scale']} ({sidecar['mode']}, {sidecar['precision_label'] or f'{bits}-bit'}), tile {opts.tile[1]}x{opts.tile[0]} (WxH)"
    return proto, sidecar


def parameter_counts(model: nn.Module, sites) -> dict:
    """The FP model's parameter count and how many of them are quantized Linear weights (real width ``m`` of
    each linear site, where the graph holds them padded to ``n``); ``compsrt inspect`` reports bits per
    parameter with them."""
    from ..models.swinir import SwinIR

    with torch.device("meta"):
        total = sum(p.numel() for p in SwinIR(model.config).parameters())
    quantized = sum(s.out_features * s.m for s in sites if s.kind == "linear")
    return {"model": int(total), "quantized_weights": int(quantized)}


def export_model(model: nn.Module, out: str | os.PathLike, opts: ExportOptions, meta: dict | None = None) -> ExportResult:
    try:
        proto, sidecar = build_onnx(model, opts, meta)
    except (RuntimeError, MemoryError) as exc:  # a tile under the limit can still exceed this machine's memory
        msg = str(exc)
        if not isinstance(exc, MemoryError) and "alloc" not in msg.lower() and "out of memory" not in msg.lower():
            raise
        raise CompsrtError(f"not enough memory to export tile {opts.tile[1]}x{opts.tile[0]} (batch {opts.batch or 1}) "
                           f"on this machine ({(msg.splitlines() or [''])[0][:160]}); use a smaller --tile") from None
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return ExportResult(out, write_sidecar(out, sidecar), sidecar, proto)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, opts: ExportOptions,
                      ranges: str | os.PathLike | None = None) -> ExportResult:
    """Export any model file (FP weights, compressed checkpoint or pack; the content decides).

    ``ranges``: a `compsrt ranges` JSON of this model file for the FP16 guard (instead of the checkpoint's).
    """
    from ..calibration.checkpoint import load_model

    model, meta = load_model(checkpoint)
    meta["checkpoint"] = str(checkpoint)
    meta["checkpoint_sha256"] = sha256_file(checkpoint)
    if ranges is not None:
        meta["activation_ranges"] = read_ranges(ranges, meta["checkpoint_sha256"])
        meta["ranges_source"] = str(ranges)
    return export_model(model, out, opts, meta)

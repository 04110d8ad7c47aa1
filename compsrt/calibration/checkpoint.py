"""Self-describing compressed checkpoints (.pt) and the packed storage format (.csrt).

Checkpoint (``torch.save``; read back with ``weights_only=True``)::

    {"meta": {format, quant config, site bits, model config, fp weights sha256, calibration log, ...},
     "tensors": {state-dict name: tensor}}

``tensors`` is the frozen quantized model's state dict without the FP weights of quantized Linears:
FP32 convs / LayerNorms / biases / position tables, per-quantizer ``l, u, alpha, beta``, int8 weight codes
(``*.codes``, rotated domain, (out, n); int32 where paper-mode codes outgrow int8, see ``qmodel.code_dtype``)
and bool masks (``*.mask``).

Packed file (``.csrt``): ``b"CSRT1\\n"``, an 8-byte little-endian header length, a JSON header (meta +
tensor table), then the payload. Weight codes are stored bit-packed at the narrowest width that holds
their range (b bits for clamped deploy codes), only at kept positions when a mask prunes, masks 1 bit
per position; every other tensor raw (little-endian). The file size over the parameter count is the
measured bits per parameter. Unpacking restores every tensor bit-exactly.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..artifacts import CHECKPOINT_FORMAT as FORMAT
from ..artifacts import FP, PACKED
from ..artifacts import PACKED_MAGIC as MAGIC
from ..artifacts import read_model_file
from ..errors import CompsrtError
from ..files import atomic_path
from ..models.parts import part_of
from ..models.swinir import SwinIR, SwinIRConfig
from ..models.weights import check_state_dict, fp_state, scale_of_state_dict
from .qmodel import QLinear, QuantConfig, freeze_model, quantize_model, site_bits


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    freeze_model(model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.endswith(".fp_weight")}


def save_checkpoint(model: torch.nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    meta = dict(meta, format=FORMAT, quant=model.quant_config.to_dict(), site_bits=site_bits(model),
                model_config=_cfg_dict(model.config))
    meta = json.loads(json.dumps(meta, default=str))  # plain JSON types only (weights_only loading)
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "tensors": model_state(model)}, tmp)
    return path


def _cfg_dict(cfg: SwinIRConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()}


def _tuple_cfg(d: dict) -> SwinIRConfig:
    return SwinIRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def build_from_tensors(meta: dict, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An eval-mode fake-quant model from checkpoint contents (no FP weights needed)."""
    if meta.get("format") != FORMAT:
        raise CompsrtError(f"not a compsrt compressed checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    cfg = _tuple_cfg(meta["model_config"])
    model = quantize_model(SwinIR(cfg), quant_config(meta), init_weights=False)
    stored, built = meta.get("site_bits"), site_bits(model)  # stored: absent in checkpoints before per-site bits
    if stored is not None and stored != built:
        bad = next(k for k in set(stored) | set(built) if stored.get(k) != built.get(k))
        raise CompsrtError(f"checkpoint's per-site bits disagree with its quant config at {bad} "
                           f"({stored.get(bad)} stored, {built.get(bad)} from the config); re-create it "
                           "with `compsrt calibrate`")
    for name, m in model.named_modules():
        if isinstance(m, QLinear):
            m.codes = tensors[f"{name}.codes"].clone()
            m.fp_weight = torch.zeros(0)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith(".fp_weight")]
    if missing or unexpected:
        raise CompsrtError(f"checkpoint does not match its model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def quant_config(meta: dict) -> QuantConfig:
    """The checkpoint's quantization config (older checkpoints, without wbits / abits / overrides: W = A = bits)."""
    q = meta.get("quant")
    if not isinstance(q, dict):
        raise CompsrtError("checkpoint meta has no quant config; re-create it with `compsrt calibrate`")
    try:
        return QuantConfig(**q)
    except TypeError as exc:
        raise CompsrtError(f"checkpoint's quant config {q} is not one this compsrt reads ({exc}); re-create it with "
                           "`compsrt calibrate` or use the compsrt that wrote it") from None


def _checkpoint_of(f) -> tuple[dict, dict[str, torch.Tensor]]:
    if f.kind == FP:
        raise CompsrtError(f"{f.path} holds FP SwinIR-light weights, not a compsrt compressed checkpoint; "
                           "create one with `compsrt calibrate` (or pass the file where FP weights are taken)")
    return unpack(f.path) if f.kind == PACKED else (f.meta, f.tensors)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, tensors) of a compressed checkpoint (.pt) or a packed file (.csrt), told apart by content."""
    return _checkpoint_of(read_model_file(path, "compressed checkpoint"))


def load_compressed_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """(model, meta): the runnable fake-quant model (eval, CPU) from a .pt checkpoint or a .csrt pack."""
    meta, tensors = read_checkpoint(path)
    return build_from_tensors(meta, tensors), meta


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, meta) from any model file: FP weights, a compressed checkpoint or a packed file.

    The kind is decided once from the content (:func:`compsrt.artifacts.read_model_file`); ``meta`` always
    holds ``kind`` (fp | compressed | packed), ``scale``, ``bits`` and ``mode`` (``prune``, ``wbits``, ``abits``,
    ``precision`` (W4A8 or the preset) and ``site_bits`` when compressed).
    """
    f = read_model_file(path, "checkpoint")
    if f.kind == FP:
        state = fp_state(f.state)
        scale = scale_of_state_dict(state)
        if scale is None:
            raise CompsrtError(f"{path}: cannot tell the scale from upsample.0.weight; is it SwinIR-light weights?")
        check_state_dict(state, scale, str(path))
        model = SwinIR(SwinIRConfig(scale=scale))
        model.load_state_dict(state, strict=True)
        return model.eval(), {"scale": scale, "bits": 32, "mode": "fp", "kind": FP}
    meta, tensors = _checkpoint_of(f)
    model = build_from_tensors(meta, tensors)
    meta = dict(meta)
    cfg = model.quant_config
    meta.setdefault("scale", int(model.scale))
    meta.setdefault("bits", cfg.bits)
    meta.setdefault("mode", cfg.mode)
    meta.setdefault("prune", cfg.prune)
    meta.update(wbits=cfg.wbits, abits=cfg.abits, precision=cfg.label, site_bits=site_bits(model))
    meta["kind"] = f.kind
    return model, meta


# ---------------------------------------------------------------------------------------------------
# packed format


def _pack_bits(values: np.ndarray, width: int) -> bytes:
    """Unsigned ints < 2**width -> little-endian bit stream."""
    if values.size == 0 or width == 0:
        return b""
    bits = ((values[:, None].astype(np.uint64) >> np.arange(width, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def _unpack_bits(buf: bytes, width: int, count: int) -> np.ndarray:
    if count == 0 or width == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")[: count * width].reshape(count, width)
    return (bits.astype(np.int64) << np.arange(width, dtype=np.int64)).sum(1)


def pack(meta: dict, tensors: dict[str, torch.Tensor], out: str | os.PathLike) -> dict:
    """Write the packed file; return size statistics (bits per parameter)."""
    table, chunks, offset = [], [], 0
    payload_codes_bits = 0
    n_qweights = 0
    masks = {k: v for k, v in tensors.items() if k.endswith(".mask")}
    for name, t in tensors.items():
        entry = {"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        if name.endswith(".codes"):
            mask = masks[name[: -len(".codes")] + ".mask"].numpy().reshape(-1)
            vals = t.numpy().astype(np.int64).reshape(-1)
            pruned = not mask.all()
            kept = vals[mask] if pruned else vals
            lo = int(kept.min()) if kept.size else 0
            width = max(1, int(kept.max() - lo).bit_length()) if kept.size else 0
            data = _pack_bits(kept - lo, width)
            entry.update(enc="bits", width=width, low=lo, masked=pruned, count=int(kept.size))
            payload_codes_bits += len(data) * 8
        elif name.endswith(".mask") and bool(t.all()):
            data = b""  # nothing pruned: no mask is stored
            entry.update(enc="ones")
        elif name.endswith(".mask"):
            data = np.packbits(t.numpy().reshape(-1).astype(np.uint8), bitorder="little").tobytes()
            entry.update(enc="bits1")
            payload_codes_bits += len(data) * 8
        else:
            arr = t.contiguous().numpy()
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry.update(enc="raw")
        entry.update(offset=offset, nbytes=len(data))
        offset += len(data)
        table.append(entry)
        chunks.append(data)
    header = json.dumps({"meta": meta, "tensors": table}, sort_keys=True).encode()
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for c in chunks:
                f.write(c)
    size = out.stat().st_size
    cfg = _tuple_cfg(meta["model_config"])
    fp_params = sum(p.numel() for p in SwinIR(cfg).parameters())
    for name, m in quantize_model(SwinIR(cfg), quant_config(meta), init_weights=False).named_modules():
        if isinstance(m, QLinear):
            n_qweights += m.out_features * m.in_features
    return {
        "file_bytes": size,
        "fp_params": fp_params,
        "bits_per_param": 8 * size / fp_params,
        "fp32_bytes": 4 * fp_params,
        "quantized_linear_weights": n_qweights,
        "code_and_mask_bits_per_quantized_weight": payload_codes_bits / n_qweights,
        "header_bytes": len(MAGIC) + 8 + len(header),
        **_file_parts(table, n_qweights),
    }


QUANTIZER_TENSORS = (".l", ".u", ".alpha", ".beta")


def _file_parts(table: list[dict], n_qweights: int) -> dict:
    """Where the packed bytes go: weight codes and masks, quantizer ranges, and each part kept in floating
    point (:mod:`compsrt.models.parts`), with its value count and bytes. Codes are per rotated-domain weight:
    a Linear whose input width is no power of two (120) is padded to one (128) by the Hadamard rotation, so
    the bits per quantized weight of the model are the code bytes over the model's weights."""
    fp: dict[str, dict] = {}
    ranges = {"values": 0, "bytes": 0}
    codes = {"weights": n_qweights, "values": 0, "bytes": 0, "mask_bytes": 0, "code_bits": set()}
    for e in table:
        n = int(np.prod(e["shape"])) if e["shape"] else 1
        name = e["name"]
        if name.endswith(".codes"):
            codes["values"] += n
            codes["bytes"] += e["nbytes"]
            codes["code_bits"].add(e["width"])
        elif name.endswith(".mask"):
            codes["mask_bytes"] += e["nbytes"]
        elif name.endswith(QUANTIZER_TENSORS):
            ranges["values"] += n
            ranges["bytes"] += e["nbytes"]
        else:
            part = fp.setdefault(part_of(name), {"values": 0, "bytes": 0, "dtype": e["dtype"]})
            part["values"] += n
            part["bytes"] += e["nbytes"]
    codes["code_bits"] = sorted(codes["code_bits"])
    codes["bits_per_weight"] = 8 * codes["bytes"] / max(n_qweights, 1)
    codes["mask_bits_per_weight"] = 8 * codes["mask_bytes"] / max(n_qweights, 1)
    return {"quantized_weights": codes, "quantizer_ranges": ranges, "fp_parts": fp}


def unpack(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    raw = Path(path).read_bytes()
    if not raw.startswith(MAGIC):
        raise CompsrtError(f"{path} is not a packed compsrt file")
    (hlen,) = struct.unpack("<Q", raw[len(MAGIC) : len(MAGIC) + 8])
    start = len(MAGIC) + 8
    header = json.loads(raw[start : start + hlen])
    base = start + hlen
    tensors: dict[str, torch.Tensor] = {}
    entries = header["tensors"]
    # masks first (codes need them)
    order = sorted(entries, key=lambda e: 0 if e["name"].endswith(".mask") else 1)
    for e in order:
        buf = raw[base + e["offset"] : base + e["offset"] + e["nbytes"]]
        shape = tuple(e["shape"])
        n = int(np.prod(shape)) if shape else 1
        if e["enc"] == "raw":
            dt = np.dtype(_NP[e["dtype"]]).newbyteorder("<")
            arr = np.frombuffer(buf, dtype=dt).astype(dt.newbyteorder("="), copy=True).reshape(shape)
            tensors[e["name"]] = torch.from_numpy(arr)
        elif e["enc"] == "ones":
            tensors[e["name"]] = torch.ones(shape, dtype=torch.bool)
        elif e["enc"] == "bits1":
            bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")[:n]
            tensors[e["name"]] = torch.from_numpy(bits.astype(bool).reshape(shape))
        else:
            vals = _unpack_bits(buf, e["width"], e["count"]) + e["low"]
            if e["masked"]:
                mask = tensors[e["name"][: -len(".codes")] + ".mask"].numpy().reshape(-1)
                full = np.zeros(n, dtype=np.int64)
                full[mask] = vals
                vals = full
            tensors[e["name"]] = torch.from_numpy(vals.astype(_NP[e["dtype"]]).reshape(shape))
    ordered = {e["name"]: tensors[e["name"]] for e in entries}
    return header["meta"], ordered


_NP = {"float32": np.float32, "float64": np.float64, "int8": np.int8, "int64": np.int64, "bool": np.bool_,
       "float16": np.float16, "int32": np.int32, "uint8": np.uint8}


def pack_file(src: str | os.PathLike, out: str | os.PathLike) -> dict:
    meta, tensors = read_checkpoint(src)
    return pack(meta, tensors, out)

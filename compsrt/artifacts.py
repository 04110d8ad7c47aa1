"""The files stages hand each other: what a model file is, and the JSON sidecar beside an ONNX model or engine.

Model files (``--weights`` / ``--checkpoint``): :func:`read_model_file` decides once, from the content,
whether a file holds FP SwinIR-light weights (a state dict, optionally under ``params`` /
``params_ema``), a compressed checkpoint (``{"meta": {"format": CHECKPOINT_FORMAT}, "tensors": ...}``)
or a packed ``.csrt`` (starts with :data:`PACKED_MAGIC`); the extension does not matter. Files are read
with ``torch.load(weights_only=True)``: no pickled code runs.

Sidecars: one naming rule, ``<artifact>.json`` (``model.onnx.json``, ``engine.plan.json``), one writer
(atomic) and one reader. The export writes format :data:`ONNX_FORMAT`, ``compsrt build`` writes
:data:`ENGINE_FORMAT`; both name the graph's input and output :data:`INPUT_NAME` / :data:`OUTPUT_NAME`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CompsrtError
from .files import atomic_write_text

ONNX_FORMAT = "compsrt-onnx/1"
ENGINE_FORMAT = "compsrt-engine/1"
CHECKPOINT_FORMAT = "compsrt-quant/1"
PACKED_MAGIC = b"CSRT1\n"
INPUT_NAME, OUTPUT_NAME = "input", "output"

FP, COMPRESSED, PACKED = "fp", "compressed", "packed"
# what a file that torch.load cannot read is instead, by its first bytes (for the error message)
FILE_MAGICS = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"PK\x03\x04": "a zip archive (a PyTorch .pth?)",
               b"\x08": "an ONNX model"}
PARAM_KEYS = ("params", "params_ema")


def file_kind(head: bytes) -> str | None:
    """What a file is by its first bytes, for error messages (:data:`FILE_MAGICS`); None when unknown."""
    return next((kind for magic, kind in FILE_MAGICS.items() if head.startswith(magic)), None)


def check_scale(requested: int | None, actual: int | None, source) -> int | None:
    """The model's scale; a different ``--scale`` is refused the same way by every command."""
    if requested is not None and actual and requested != actual:
        raise CompsrtError(f"{source} is a x{actual} model; pass --scale {actual} or omit --scale")
    return actual


# ------------------------------------------------------------------------------------------ sidecars
def sidecar_path(artifact: str | os.PathLike) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: str | os.PathLike, meta: dict) -> Path:
    """Write ``meta`` (which names its ``format``) beside ``artifact``, atomically; returns the sidecar path."""
    if "format" not in meta:
        raise ValueError("a sidecar names its format")
    path = sidecar_path(artifact)
    atomic_write_text(path, json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
    return path


def read_sidecar(artifact: str | os.PathLike, fmt: str | None = None, *, required: bool = False,
                 fix: str = "re-create it") -> dict:
    """The sidecar of ``artifact`` ({} when absent and not ``required``); ``fmt`` checks its format.

    ``fix`` ends every error message (how to get a good sidecar: the command that writes it).
    """
    path = sidecar_path(artifact)
    if not path.is_file():
        if required:
            raise CompsrtError(f"{path} is missing; {fix}")
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompsrtError(f"sidecar {path} is unreadable ({exc}); {fix}") from None
    if not isinstance(meta, dict):
        raise CompsrtError(f"sidecar {path} holds no JSON object; {fix}")
    if fmt is not None and meta.get("format") != fmt:
        raise CompsrtError(f"{path} has format {meta.get('format')!r}, expected {fmt}; {fix}")
    return meta


def sidecar_tile(meta: dict) -> tuple[int, int] | None:
    """The (h, w) tile a sidecar records (an int, [h, w] or {h, w}), None when it records none."""
    t = meta.get("tile")
    if t is None:
        return None
    if isinstance(t, int):
        return (t, t)
    if isinstance(t, dict):
        return (int(t.get("h") or t.get("height")), int(t.get("w") or t.get("width")))
    return (int(t[0]), int(t[1]))


# --------------------------------------------------------------------------------------- model files
@dataclass
class ModelFile:
    """A model file read once: ``kind`` is FP, COMPRESSED or PACKED.

    ``state``: the learned FP tensors (FP); ``meta`` / ``tensors``: the checkpoint (COMPRESSED); a packed
    file is classified by its magic only and read by :func:`compsrt.calibration.checkpoint.unpack`.
    """

    path: Path
    kind: str
    state: dict[str, Any] | None = None
    meta: dict | None = None
    tensors: dict[str, Any] | None = None


def read_model_file(path: str | os.PathLike, what: str = "model file") -> ModelFile:
    """Read and classify ``path`` by its content (one-line errors naming ``what`` and the fix)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CompsrtError(f"{what} {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(len(PACKED_MAGIC))
    if head == PACKED_MAGIC:
        return ModelFile(path, PACKED)
    expected = "expected SwinIR-light weights (official .pth state dict) or a compressed checkpoint from `compsrt calibrate`"
    if not head:
        raise CompsrtError(f"cannot read {what} {path}: it is empty (0 bytes); {expected}")
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip archive, or a legacy pickle
        kind = file_kind(head) or "no file written by torch.save"
        raise CompsrtError(f"cannot read {what} {path}: it is {kind}, not a PyTorch file; {expected}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zips, non-tensor payloads
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CompsrtError(f"cannot read {what} {path}: {exc.__class__.__name__}: {first}; {expected}") from None
    if isinstance(obj, dict) and "meta" in obj and "tensors" in obj:
        meta = obj["meta"]
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise CompsrtError(f"{path} is not a compsrt compressed checkpoint (format {fmt!r}, expected "
                               f"{CHECKPOINT_FORMAT}); re-create it with `compsrt calibrate`")
        return ModelFile(path, COMPRESSED, meta=meta, tensors=obj["tensors"])
    if isinstance(obj, dict):
        for key in PARAM_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return ModelFile(path, FP, state=obj)
    raise CompsrtError(f"{what} {path} holds neither a state dict of tensors (keys tried: {PARAM_KEYS}) nor a "
                       "compressed checkpoint (meta/tensors)")

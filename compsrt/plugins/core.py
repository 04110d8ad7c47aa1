"""TensorRT-independent logic of the ``HadamardTransform`` plugin.

Everything the TensorRT plugin classes (trt_plugin.py) do that does not need TensorRT lives
here, so it can be unit-tested on machines without TensorRT and the GPU test can call the
plugin's ``enqueue`` with raw device pointers and stand-in tensor descriptors (any object
with ``.dims`` and ``.type``; ``.type`` may be a TensorRT ``DataType`` or its name as a str:
"FLOAT", "HALF", "INT8").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, List, Sequence, Tuple

import numpy as np

from .kernel import HadamardKernel, validate_n_width

INT_FIELDS = ("n", "axis", "width", "quantize", "qmin", "qmax")
FLOAT_FIELDS = ("shift", "scale")
FIELD_ORDER = ("n", "axis", "width", "quantize", "shift", "scale", "qmin", "qmax")

_TYPE_TO_NUMPY = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8"}


def type_name(t: Any) -> str:
    """'FLOAT' / 'HALF' / 'INT8' / ... for a TensorRT DataType (or TensorFormat) or a str."""
    if isinstance(t, str):
        return t.upper()
    name = getattr(t, "name", None)
    if name is None:
        name = str(t).split(".")[-1]
    return str(name).upper()


def _scalar(data: Any) -> Any:
    arr = np.asarray(data)
    if arr.dtype.kind in ("S", "U", "O") or arr.size == 0:
        raise ValueError(f"expected a numeric scalar field, got {data!r}")
    return arr.reshape(-1)[0].item()


@dataclass
class HadamardAttrs:
    """Plugin attributes (= ONNX node attributes = plugin fields)."""

    n: int
    axis: int = -1
    width: int = 0  # 0 means "same as n"
    quantize: int = 0
    shift: float = 0.0
    scale: float = 1.0
    qmin: int = -128
    qmax: int = 127

    def __post_init__(self) -> None:
        self.n = int(self.n)
        self.axis = int(self.axis)
        self.width = int(self.width) if int(self.width) > 0 else self.n
        self.quantize = int(bool(self.quantize))
        self.shift = float(np.float32(self.shift))
        self.scale = float(np.float32(self.scale))
        self.qmin = int(self.qmin)
        self.qmax = int(self.qmax)
        self.validate()

    def validate(self) -> None:
        validate_n_width(self.n, self.width)
        if self.quantize:
            if not (self.scale > 0.0 and math.isfinite(self.scale)):
                raise ValueError(f"scale must be a finite positive float, got {self.scale}")
            if not math.isfinite(self.shift):
                raise ValueError(f"shift must be finite, got {self.shift}")
            if not (-128 <= self.qmin <= self.qmax <= 127):
                raise ValueError(f"need -128 <= qmin <= qmax <= 127, got {self.qmin}, {self.qmax}")

    @classmethod
    def from_fields(cls, fields: Iterable[Tuple[str, Any]]) -> "HadamardAttrs":
        """Build from (name, data) pairs; unknown names (e.g. plugin_version) are ignored."""
        kw = {}
        for name, data in fields:
            if name in INT_FIELDS:
                kw[name] = int(_scalar(data))
            elif name in FLOAT_FIELDS:
                kw[name] = float(_scalar(data))
        if "n" not in kw:
            raise ValueError("HadamardTransform needs the field 'n'")
        return cls(**kw)

    def field_items(self) -> List[Tuple[str, np.ndarray]]:
        """(name, 1-element numpy array) pairs: int32 for ints, float32 for floats."""
        d = asdict(self)
        out = []
        for name in FIELD_ORDER:
            dt = np.int32 if name in INT_FIELDS else np.float32
            out.append((name, np.array([d[name]], dtype=dt)))
        return out

    # --- shape / type / format negotiation (shared by the TRT class) ---
    def check_axis(self, rank: int) -> None:
        if rank < 1:
            raise ValueError("HadamardTransform needs an input of rank >= 1")
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"HadamardTransform supports only the last axis (axis=-1), got axis={self.axis}")

    def output_shape(self, in_shape: Sequence[int]) -> Tuple[int, ...]:
        in_shape = tuple(int(d) for d in in_shape)
        self.check_axis(len(in_shape))
        if in_shape[-1] >= 0 and in_shape[-1] != self.width:
            raise ValueError(f"input last dim {in_shape[-1]} != width {self.width}")
        return in_shape[:-1] + (self.n,)

    def output_type_name(self, input_type_name: str) -> str:
        return "INT8" if self.quantize else type_name(input_type_name)

    def supports(self, pos: int, types: Sequence[Any], formats: Sequence[Any]) -> bool:
        """supports_format_combination for one input (pos 0) and one output (pos 1)."""
        if type_name(formats[pos]) != "LINEAR":
            return False
        if pos == 0:
            return type_name(types[0]) in ("FLOAT", "HALF")
        if pos == 1:
            want = "INT8" if self.quantize else type_name(types[0])
            return type_name(types[1]) == want
        return False


class HadamardPluginCore:
    """Runtime half of the plugin: enqueue on raw device pointers, no host synchronisation."""

    def __init__(self, attrs: HadamardAttrs):
        self.attrs = attrs
        self._kernel = None

    def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream) -> int:
        a = self.attrs
        dims = [int(d) for d in input_desc[0].dims]
        a.check_axis(len(dims))
        m = dims[-1]
        if m != a.width:
            raise ValueError(f"input last dim {m} != width {a.width}")
        rows = int(np.prod(dims[:-1], dtype=np.int64)) if len(dims) > 1 else 1
        in_t = type_name(input_desc[0].type)
        if in_t not in ("FLOAT", "HALF"):
            raise ValueError(f"unsupported input type {in_t}")
        out_t = type_name(output_desc[0].type)
        if out_t != a.output_type_name(in_t):
            raise ValueError(f"output type {out_t} != expected {a.output_type_name(in_t)}")
        if self._kernel is None:
            self._kernel = HadamardKernel()
        self._kernel.launch(
            int(inputs[0]), int(outputs[0]), rows, a.n, m, _TYPE_TO_NUMPY[in_t],
            quantize=bool(a.quantize), shift=a.shift, scale=a.scale, qmin=a.qmin, qmax=a.qmax,
            stream=int(stream),
        )
        return 0

"""compsrt.plugins: Hadamard TensorRT plugin (fast Walsh-Hadamard transform + fused INT8 quantize).

ONNX node contract (for the export stage)
-----------------------------------------
One op, ``op_type="HadamardTransform"`` (any domain; TensorRT's ONNX parser falls back to
the plugin registry for unknown ops), one input, one output, attributes:

==================  ======  ==========================================================
``plugin_version``  string  ``"1"`` (PLUGIN_VERSION)
``plugin_namespace`` string ``"compsrt"`` (PLUGIN_NAMESPACE)
``n``               int     transform size, power of two in [2, 1024]
``axis``            int     must be -1 (or rank-1): only the last axis is supported
``width``           int     real width m, 1 <= m <= n (0 or absent = n). Input last dim
                            is m, output last dim is n; the input row is zero-padded to n
``quantize``        int     0 (default): output = transform, same dtype as input
                            (FP32 or FP16). 1: output INT8 codes (fused quantizer)
``shift``           float   quantize only; default 0.0
``scale``           float   quantize only; > 0, default 1.0
``qmin``, ``qmax``  int     quantize only; saturation bounds, default -128, 127
==================  ======  ==========================================================

Math (FP32 inside, whatever the I/O type)::

    y     = H_n @ pad(x, n) / sqrt(n)          # H_n Sylvester: H[i, j] = (-1)**popcount(i & j)
    codes = clip(round_half_even((y - shift) / scale), qmin, qmax).astype(int8)   # quantize=1

``y`` is not rounded to FP16 before quantizing. :func:`hadamard_matrix`,
:func:`reference_hadamard` and :func:`reference_quantize` give the float64 reference.

Python plugin: :func:`register_python_plugin` (works with ``tensorrt`` and ``tensorrt_rtx``,
kernel through CuPy). C++ plugin: ``compsrt/plugins/cpp`` builds ``libcompsrt_plugins.so``
exposing the same creator (name, version, namespace, fields) for trtexec ``--dynamicPlugins``.
Do not register both in one process: the registry refuses the second.
"""

from __future__ import annotations

import numpy as np

from .trt_plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, register_python_plugin

__all__ = [
    "PLUGIN_NAME",
    "PLUGIN_VERSION",
    "PLUGIN_NAMESPACE",
    "register_python_plugin",
    "hadamard_matrix",
    "reference_hadamard",
    "reference_quantize",
    "onnx_node_attributes",
]


def hadamard_matrix(n: int) -> np.ndarray:
    """Orthonormal Sylvester Hadamard matrix (float64, symmetric, H @ H = I)."""
    if n < 1 or (n & (n - 1)):
        raise ValueError(f"n must be a power of two, got {n}")
    h = np.ones((1, 1), dtype=np.float64)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def reference_hadamard(x: np.ndarray, n: int) -> np.ndarray:
    """float64 reference: zero-pad the last axis of x to n, multiply by the orthonormal H_n."""
    x = np.asarray(x, dtype=np.float64)
    m = x.shape[-1]
    if m > n:
        raise ValueError(f"last dim {m} > n={n}")
    if m < n:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (n - m,), dtype=np.float64)], axis=-1)
    return x @ hadamard_matrix(n)  # H is symmetric


def reference_quantize(y: np.ndarray, shift: float, scale: float, qmin: int = -128, qmax: int = 127,
                       dtype=np.float64) -> np.ndarray:
    """codes = clip(rint((y - shift) / scale), qmin, qmax) as int8, computed in ``dtype``."""
    y = np.asarray(y, dtype=dtype)
    q = np.rint((y - dtype(shift)) / dtype(scale))
    return np.clip(q, qmin, qmax).astype(np.int8)


def onnx_node_attributes(n: int, width: int | None = None, *, quantize: bool = False, shift: float = 0.0,
                         scale: float = 1.0, qmin: int = -128, qmax: int = 127) -> dict:
    """Attribute dict for an ONNX ``HadamardTransform`` node following the contract above."""
    # Every field is written (also when quantize=0): TensorRT's parser warns about fields a node lacks.
    return {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE,
            "n": int(n), "axis": -1, "width": int(width if width is not None else n),
            "quantize": int(bool(quantize)), "shift": float(shift), "scale": float(scale),
            "qmin": int(qmin), "qmax": int(qmax)}

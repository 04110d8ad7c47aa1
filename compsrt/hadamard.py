"""The one Hadamard module: the matrix (numpy and torch), its float64 reference, and the ONNX node contract.

Calibration rotates with the torch functions, the export writes the matrix as a graph constant or a
``HadamardTransform`` node (:func:`onnx_node_attributes`), and the TensorRT plugin implements that node;
all three read the matrix and the node's name, version and namespace from here, so they cannot drift.

ONNX node contract (export writes it, :mod:`compsrt.plugins` implements it)
---------------------------------------------------------------------------
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

``y`` is not rounded to FP16 before quantizing. :func:`hadamard_matrix`, :func:`reference_hadamard`
and :func:`reference_quantize` give the float64 reference.

torch is imported by the torch functions only: the plugin and the graph surgery need numpy alone.
"""

from __future__ import annotations

import numpy as np

PLUGIN_NAME = "HadamardTransform"  # the plugin's registry name is the ONNX op type
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "compsrt"  # also the ONNX domain of the node

_CACHE: dict[tuple, "torch.Tensor"] = {}  # noqa: F821


def next_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


def hadamard_matrix(n: int, dtype=np.float64) -> np.ndarray:
    """Orthonormal Sylvester Hadamard matrix (symmetric, H @ H = I), computed in float64, cast to ``dtype``."""
    if n < 1 or (n & (n - 1)):
        raise ValueError(f"n must be a power of two, got {n}")
    h = np.ones((1, 1), dtype=np.float64)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return (h / np.sqrt(n)).astype(dtype, copy=False)


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


# ------------------------------------------------------------------------------------------- torch
def hadamard(n: int, device="cpu", dtype=None):
    """The n x n Sylvester Hadamard matrix scaled by 1/sqrt(n) as a (cached) torch tensor (default float32).

    Entries are exactly +-2**(-k/2); for n a power of 4 (16, 64) they are exact binary fractions.
    """
    import torch

    dtype = dtype or torch.float32
    key = (n, torch.device(device), dtype)
    h = _CACHE.get(key)
    if h is None:
        h = torch.from_numpy(hadamard_matrix(n)).to(device=device, dtype=dtype)
        _CACHE[key] = h
    return h


def pad_last(x, n: int):
    """Zero-pad the last axis of a torch tensor to width ``n``."""
    import torch.nn.functional as F

    m = x.shape[-1]
    return x if m == n else F.pad(x, (0, n - m))


def rotate_last(x, n: int | None = None):
    """[x, 0] @ H_n along the last axis (n defaults to the next power of two)."""
    n = n or next_pow2(x.shape[-1])
    return pad_last(x, n) @ hadamard(n, x.device, x.dtype)


def rotate_tokens(x):
    """H_n @ x along the second-to-last axis (the token axis of a window; n must be a power of two)."""
    n = x.shape[-2]
    return hadamard(n, x.device, x.dtype) @ x

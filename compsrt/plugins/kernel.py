"""CuPy/NVRTC launcher for the shared Hadamard CUDA kernel (csrc/hadamard_kernels.cuh).

Importable without CuPy or a GPU; CuPy is imported on first launch. The launch logic
mirrors csrc/hadamard_launch.cu (the C++ plugin's launcher): keep both in step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
KERNEL_HEADER = CSRC_DIR / "hadamard_kernels.cuh"

MIN_N = 2
MAX_N = 1024
ELEMS_PER_THREAD = (1, 2, 4, 8, 16, 32)
ROWS_PER_THREAD = (1, 2, 4)
THREADS_PER_BLOCK = 128  # mirror of compsrt::kThreadsPerBlock (.cuh)
MAX_THREADS_PER_BLOCK = 256  # the kernel's __launch_bounds__
MAX_BLOCKS = 1 << 20

_CTYPE_IN = {"float32": "float", "float16": "__half"}


def is_power_of_two(v: int) -> bool:
    return v > 0 and (v & (v - 1)) == 0


def validate_n_width(n: int, width: int) -> None:
    if not (is_power_of_two(n) and MIN_N <= n <= MAX_N):
        raise ValueError(f"n must be a power of two in [{MIN_N}, {MAX_N}], got {n}")
    if not (1 <= width <= n):
        raise ValueError(f"width must satisfy 1 <= width <= n={n}, got {width}")


def default_elems_per_thread(n: int, in_dtype: str = "float32") -> int:
    """Mirror of compsrt::defaultElemsPerThread in the .cuh (tuned on the H200, docs/plugins.md)."""
    e = 8 if in_dtype == "float32" else (8 if n <= 16 else 16)
    return min(max(e, n // 32), n)


def default_rows_per_thread(elems_per_thread: int, in_dtype: str = "float32") -> int:
    """Mirror of compsrt::defaultRowsPerThread in the .cuh (thread-slots per thread and iteration)."""
    return 1


def kernel_name(in_dtype: str, quantize: bool, elems_per_thread: int, rows_per_thread: Optional[int] = None) -> str:
    """Name expression of one instantiation; rows_per_thread None (or the default) = the default R."""
    tin = _CTYPE_IN[in_dtype]
    tout = "signed char" if quantize else tin
    if rows_per_thread is None or rows_per_thread == default_rows_per_thread(elems_per_thread, in_dtype):
        return f"compsrt::hadamardRowsKernel<{tin}, {tout}, {elems_per_thread}>"
    return f"compsrt::hadamardRowsKernel<{tin}, {tout}, {elems_per_thread}, {rows_per_thread}>"


def all_kernel_names() -> list:
    """The instantiations compiled up front (default R). Other R values are compiled on first use."""
    return [kernel_name(d, q, e) for d in _CTYPE_IN for q in (False, True) for e in ELEMS_PER_THREAD]


_DEFAULT_NAMES = frozenset(all_kernel_names())


def kernel_source() -> str:
    return KERNEL_HEADER.read_text()


_STREAMS: dict = {}


def _external_stream(cp, ptr: int):
    """CuPy wrapper of a foreign stream handle (cached: creating one per launch costs host time)."""
    st = _STREAMS.get(ptr)
    if st is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # CuPy 14 prefers Stream.from_external
            st = cp.cuda.ExternalStream(ptr)
        if len(_STREAMS) > 64:
            _STREAMS.clear()
        _STREAMS[ptr] = st
    return st


class HadamardKernel:
    """Launches the kernel on raw device pointers (ints), asynchronously on a given stream.

    One NVRTC module holding every instantiation is compiled per process on first use
    (CuPy caches it on disk afterwards).
    """

    _module = None
    _extra: dict = {}  # non-default R instantiations (benchmark sweeps), compiled on demand

    @classmethod
    def function(cls, name: str):
        if name in _DEFAULT_NAMES:
            return cls.module().get_function(name)
        fn = cls._extra.get(name)
        if fn is None:
            import cupy as cp

            mod = cp.RawModule(code=kernel_source(), options=("-std=c++17",), name_expressions=[name])
            fn = cls._extra[name] = mod.get_function(name)
        return fn

    @classmethod
    def module(cls):
        if cls._module is None:
            import cupy as cp

            cls._module = cp.RawModule(
                code=kernel_source(),
                options=("-std=c++17",),
                name_expressions=all_kernel_names(),
            )
        return cls._module

    def launch(
        self,
        x_ptr: int,
        y_ptr: int,
        rows: int,
        n: int,
        width: int,
        in_dtype: str,
        *,
        quantize: bool = False,
        shift: float = 0.0,
        scale: float = 1.0,
        qmin: int = -128,
        qmax: int = 127,
        stream: int = 0,
        elems_per_thread: Optional[int] = None,
        rows_per_thread: Optional[int] = None,
        max_blocks: Optional[int] = None,
        threads_per_block: int = THREADS_PER_BLOCK,
    ) -> None:
        import cupy as cp
        import numpy as np

        validate_n_width(n, width)
        if in_dtype not in _CTYPE_IN:
            raise ValueError(f"in_dtype must be float32 or float16, got {in_dtype!r}")
        if rows < 0:
            raise ValueError("rows must be >= 0")
        if rows == 0:
            return
        e = default_elems_per_thread(n, in_dtype) if elems_per_thread is None else int(elems_per_thread)
        if e not in ELEMS_PER_THREAD or e > n or n // e > 32:
            raise ValueError(f"invalid elems_per_thread={e} for n={n}")
        r = default_rows_per_thread(e, in_dtype) if rows_per_thread is None else int(rows_per_thread)
        if r not in ROWS_PER_THREAD:
            raise ValueError(f"rows_per_thread must be one of {ROWS_PER_THREAD}, got {r}")
        if threads_per_block % 32 or not 32 <= threads_per_block <= MAX_THREADS_PER_BLOCK:
            raise ValueError(f"threads_per_block must be a multiple of 32 in [32, {MAX_THREADS_PER_BLOCK}]")
        log_t = int(math.log2(n // e))
        total = rows << log_t
        per_block = threads_per_block * r
        blocks = min((total + per_block - 1) // per_block, MAX_BLOCKS if max_blocks is None else int(max_blocks))
        vec_in = int(width == n and x_ptr % 16 == 0)
        vec_out = int(y_ptr % 16 == 0)
        norm = np.float32(1.0 / math.sqrt(n))
        fn = self.function(kernel_name(in_dtype, quantize, e, r))
        args = (
            np.uint64(x_ptr),
            np.uint64(y_ptr),
            np.int64(rows),
            np.int32(width),
            np.int32(log_t),
            np.int32(vec_in),
            np.int32(vec_out),
            norm,
            np.float32(shift),
            np.float32(scale),
            np.float32(qmin),
            np.float32(qmax),
        )
        with _external_stream(cp, int(stream)):
            fn((int(blocks),), (int(threads_per_block),), args)


def hadamard_cupy(x, n: int, *, quantize: bool = False, shift: float = 0.0, scale: float = 1.0,
                  qmin: int = -128, qmax: int = 127, out=None, elems_per_thread: Optional[int] = None,
                  rows_per_thread: Optional[int] = None):
    """Convenience wrapper: Hadamard transform of a C-contiguous CuPy array along its last axis.

    The last dim of ``x`` is the real width m; the result has last dim n (INT8 if quantize).
    """
    import cupy as cp

    if not x.flags.c_contiguous:
        x = cp.ascontiguousarray(x)
    in_dtype = str(x.dtype)
    m = x.shape[-1]
    rows = int(x.size // m) if m else 0
    out_dtype = cp.int8 if quantize else x.dtype
    if out is None:
        out = cp.empty(x.shape[:-1] + (n,), dtype=out_dtype)
    HadamardKernel().launch(
        x.data.ptr, out.data.ptr, rows, n, m, in_dtype, quantize=quantize, shift=shift, scale=scale,
        qmin=qmin, qmax=qmax, stream=cp.cuda.get_current_stream().ptr, elems_per_thread=elems_per_thread,
        rows_per_thread=rows_per_thread,
    )
    return out

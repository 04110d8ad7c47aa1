"""GPU tests of the Hadamard kernel and of the Python plugin's enqueue (need CuPy + a CUDA GPU).

Run on a GPU machine with:  python3 -m pytest tests/test_plugins_gpu.py -q
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
pytestmark = pytest.mark.gpu

from compsrt.plugins import reference_hadamard, reference_quantize  # noqa: E402
from compsrt.plugins.core import HadamardAttrs, HadamardPluginCore  # noqa: E402
from compsrt.plugins.kernel import (  # noqa: E402
    CSRC_DIR, ELEMS_PER_THREAD, ROWS_PER_THREAD, HadamardKernel, hadamard_cupy,
)

ALL_N = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
FP32_ATOL = 1e-5
FP16_RTOL = 2e-3


def _widths(n):
    ws = {n, n - 1 if n > 1 else 1, 1}
    for m in (10, 60, 120):
        if m < n:
            ws.add(m)
    return sorted(w for w in ws if w >= 1)


def _check(out, ref, dtype):
    out = cp.asnumpy(out).astype(np.float64)
    err = np.abs(out - ref)
    if dtype == np.float32:
        assert err.max() <= FP32_ATOL, f"fp32 max abs err {err.max():.3e}"
    else:
        scale = np.abs(ref).max()
        assert err.max() <= FP16_RTOL * scale, f"fp16 max err {err.max():.3e} vs max|ref| {scale:.3e}"
        assert np.linalg.norm(err) <= FP16_RTOL * np.linalg.norm(ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("n", ALL_N)
def test_kernel_matches_dense_reference(n, dtype):
    rng = np.random.default_rng(n)
    for rows in (1, 37, 1001):
        for m in _widths(n):
            x = rng.standard_normal((rows, m)).astype(dtype)
            ref = reference_hadamard(x.astype(np.float64), n)
            out = hadamard_cupy(cp.asarray(x), n)
            assert out.shape == (rows, n) and out.dtype == dtype
            _check(out, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("n", [16, 64, 128, 1024])
def test_every_elems_per_thread_variant(n, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 67, n)).astype(dtype)  # leading dims flatten to odd rows
    ref = reference_hadamard(x.astype(np.float64), n)
    for e in ELEMS_PER_THREAD:
        if e > n or n // e > 32:
            continue
        for m in (n, max(1, n - 3)):
            xm = np.ascontiguousarray(x[..., :m])
            refm = reference_hadamard(xm.astype(np.float64), n)
            _check(hadamard_cupy(cp.asarray(xm), n, elems_per_thread=e), refm, dtype)
    _check(hadamard_cupy(cp.asarray(x), n), ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("n", [16, 64, 128])
def test_rows_per_thread_and_grid_variants(n, dtype):
    """For a given E, every thread-slots-per-iteration R, a tiny grid (the block-stride loop runs many
    iterations with partial R groups) and other block sizes give the same bits as the default launch,
    padded and unpadded, transform and fused."""
    rng = np.random.default_rng(n + 1)
    kern = HadamardKernel()
    st = cp.cuda.get_current_stream().ptr
    dname = np.dtype(dtype).name
    rows = 1001
    for m in (n, n - 3):
        x = cp.asarray(rng.standard_normal((rows, m)).astype(dtype))
        ref = reference_hadamard(cp.asnumpy(x).astype(np.float64), n)
        for quantize in (False, True):
            for e in ((4, 8, 16, 32) if not quantize else (8, 16)):
                if n // e > 32 or e > n:
                    continue

                def run(**kw):
                    y = cp.full((rows, n), 7, dtype=np.int8 if quantize else dtype)
                    kern.launch(x.data.ptr, y.data.ptr, rows, n, m, dname, quantize=quantize, shift=0.1,
                                scale=0.05, stream=st, elems_per_thread=e, **kw)
                    return cp.asnumpy(y)

                want = run(rows_per_thread=1)
                if not quantize:
                    _check(want, ref, dtype)
                cases = [dict(rows_per_thread=r, max_blocks=mb) for r in ROWS_PER_THREAD for mb in (None, 3)]
                cases += [dict(threads_per_block=tb, rows_per_thread=r) for tb in (32, 256) for r in (1, 2)]
                for kw in cases:
                    np.testing.assert_array_equal(run(**kw), want, err_msg=f"E={e} {kw}")


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
def test_misaligned_pointers_take_scalar_path(dtype):
    n, rows = 64, 33
    rng = np.random.default_rng(3)
    x = rng.standard_normal(rows * n + 1).astype(dtype)
    xd = cp.asarray(x)
    yd = cp.zeros(rows * n + 1, dtype=dtype)
    HadamardKernel().launch(xd.data.ptr + xd.itemsize, yd.data.ptr + yd.itemsize, rows, n, n,
                            np.dtype(dtype).name, stream=cp.cuda.get_current_stream().ptr)
    ref = reference_hadamard(x[1:].reshape(rows, n).astype(np.float64), n)
    _check(yd[1:].reshape(rows, n), ref, dtype)
    assert float(yd[0]) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("n,m", [(16, 10), (64, 60), (128, 120), (128, 128), (1024, 1000)])
def test_fused_quantize(n, m, dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((257, m)).astype(dtype)
    shift, scale, qmin, qmax = 0.125, 0.02, -100, 90  # saturates at both ends
    codes = hadamard_cupy(cp.asarray(x), n, quantize=True, shift=shift, scale=scale, qmin=qmin, qmax=qmax)
    assert codes.dtype == np.int8 and codes.shape == (257, n)
    codes = cp.asnumpy(codes).astype(np.int32)
    y64 = reference_hadamard(x.astype(np.float64), n)
    ref = reference_quantize(y64, shift, scale, qmin, qmax).astype(np.int32)
    diff = np.abs(codes - ref)
    assert diff.max() <= 1
    # Any difference must sit at a rounding tie of the exact value (FP32 vs FP64 y).
    t = (y64 - shift) / scale
    near_tie = np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-3
    assert np.all(near_tie[diff > 0])
    assert codes.min() == qmin and codes.max() == qmax
    # Exact against the FP32 transform quantized in FP32 (same y as the fused kernel).
    if dtype == np.float32:
        y32 = cp.asnumpy(hadamard_cupy(cp.asarray(x), n))
        np.testing.assert_array_equal(codes, reference_quantize(y32, shift, scale, qmin, qmax, dtype=np.float32))


@pytest.mark.parametrize("quantize", [0, 1])
@pytest.mark.parametrize("trt_type,dtype", [("FLOAT", np.float32), ("HALF", np.float16)])
def test_plugin_enqueue_with_device_pointers(trt_type, dtype, quantize):
    n, m = 64, 60
    attrs = HadamardAttrs(n=n, width=m, quantize=quantize, shift=0.1, scale=0.05)
    core = HadamardPluginCore(attrs)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 7, 11, m)).astype(dtype)
    xd = cp.asarray(x)
    out_dtype = np.int8 if quantize else dtype
    yd = cp.full((2, 7, 11, n), 99, dtype=out_dtype)
    stream = cp.cuda.Stream(non_blocking=True)
    in_desc = [SimpleNamespace(dims=x.shape, type=trt_type, format="LINEAR")]
    out_desc = [SimpleNamespace(dims=yd.shape, type="INT8" if quantize else trt_type, format="LINEAR")]
    cp.cuda.get_current_stream().synchronize()
    rc = core.enqueue(in_desc, out_desc, [xd.data.ptr], [yd.data.ptr], 0, stream.ptr)
    assert rc == 0
    stream.synchronize()
    direct = hadamard_cupy(xd, n, quantize=bool(quantize), shift=0.1, scale=0.05)
    cp.cuda.get_current_stream().synchronize()
    np.testing.assert_array_equal(cp.asnumpy(yd), cp.asnumpy(direct))
    if not quantize:
        _check(yd, reference_hadamard(x.astype(np.float64), n), dtype)


def test_plugin_enqueue_rejects_wrong_width():
    core = HadamardPluginCore(HadamardAttrs(n=16, width=10))
    xd = cp.zeros((4, 12), dtype=cp.float32)
    yd = cp.zeros((4, 16), dtype=cp.float32)
    with pytest.raises(ValueError):
        core.enqueue([SimpleNamespace(dims=(4, 12), type="FLOAT")], [SimpleNamespace(dims=(4, 16), type="FLOAT")],
                     [xd.data.ptr], [yd.data.ptr], 0, 0)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_nvcc_launcher_matches(tmp_path):
    """The C++ plugin's launcher (hadamard_launch.cu, nvcc) gives the same result as the NVRTC path."""
    lib = tmp_path / "libhl.so"
    subprocess.run(["nvcc", "-std=c++17", "-O3", "-arch=native", "-shared", "-Xcompiler", "-fPIC",
                    str(CSRC_DIR / "hadamard_launch.cu"), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    so.compsrtHadamardLaunch.restype = ctypes.c_int
    so.compsrtHadamardLaunch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                         ctypes.c_longlong, ctypes.c_int, ctypes.c_int, ctypes.c_float,
                                         ctypes.c_float, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    rng = np.random.default_rng(9)
    for dtype, code in ((np.float32, 0), (np.float16, 1)):
        for n, m in ((16, 10), (64, 60), (128, 120), (128, 128), (1024, 1024)):
            for quantize in (0, 1):
                x = cp.asarray(rng.standard_normal((101, m)).astype(dtype))
                y = cp.zeros((101, n), dtype=np.int8 if quantize else dtype)
                cp.cuda.get_current_stream().synchronize()
                err = so.compsrtHadamardLaunch(x.data.ptr, y.data.ptr, code, quantize, 101, n, m,
                                               0.1, 0.05, -128, 127, None)
                assert err == 0
                cp.cuda.runtime.deviceSynchronize()
                want = hadamard_cupy(x, n, quantize=bool(quantize), shift=0.1, scale=0.05)
                np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))

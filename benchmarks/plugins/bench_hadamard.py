#!/usr/bin/env python3
"""Benchmark the compsrt Hadamard kernel on a CUDA GPU.

Effective bandwidth = (bytes read + bytes written) / time, on N = 2^27 elements (rows = N / n,
unpadded: m = n), against (a) a device-to-device copy of the same tensor (`y.copy_(x)`, a
cudaMemcpyAsync; timed right before each n) and (b) a cuBLAS matmul by the dense orthonormal
Hadamard matrix (PyTorch), all measured in the same run and the same way: CUDA events around
--inner back-to-back launches (so host-side launch overhead, which differs between PyTorch,
CuPy and our Python launcher, is hidden behind the GPU work), time per launch, median of
--repeats after --warmup launches. --inner 1 gives the per-launch timing of earlier runs.
The fused quantizing kernel (x -> INT8 codes) is compared with the transform followed by a
separate one-pass quantize kernel (CuPy elementwise) and with PyTorch quantize ops.

    python -m benchmarks.plugins.bench_hadamard --json out.json [--sweep]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import warnings
from datetime import datetime, timezone
from pathlib import Path


from compsrt.hadamard import hadamard_matrix
from compsrt.plugins.kernel import (
    ELEMS_PER_THREAD, ROWS_PER_THREAD, THREADS_PER_BLOCK, HadamardKernel, default_elems_per_thread,
    default_rows_per_thread,
)


QUANT_SRC = r"""
#include <cuda_fp16.h>
template <typename T>
__global__ void quant8(T const* __restrict__ y, signed char* __restrict__ q, long long groups, float shift,
                       float scale)
{
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride)
    {
        __align__(16) T buf[8];
#pragma unroll
        for (int k = 0; k < (int)(8 * sizeof(T) / 16); ++k)
            reinterpret_cast<uint4*>(buf)[k] = reinterpret_cast<uint4 const*>(y + g * 8)[k];
        __align__(8) signed char out[8];
#pragma unroll
        for (int j = 0; j < 8; ++j)
        {
            float v = rintf(__fdiv_rn((float)buf[j] - shift, scale));
            out[j] = (signed char)__float2int_rn(fminf(fmaxf(v, -128.f), 127.f));
        }
        reinterpret_cast<uint2*>(q)[g] = *reinterpret_cast<uint2 const*>(out);
    }
}
"""


def time_op(fn, torch, warmup, repeats, inner):
    """Median seconds per call of fn over `repeats` event-timed batches of `inner` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(inner):
            fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) * 1e-3 / inner)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log2-elems", type=int, default=27)
    ap.add_argument("--n", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32"])
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--inner", type=int, default=10, help="launches per timed batch")
    ap.add_argument("--sweep", action="store_true",
                    help="also time every valid elems-per-thread x rows-per-thread variant and block sizes")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)

    import cupy as cp
    import numpy as np
    import torch

    warnings.simplefilter("ignore", DeprecationWarning)  # cupy.cuda.ExternalStream (CuPy 14)

    dev = torch.device("cuda")
    numel = 1 << args.log2_elems
    kern = HadamardKernel()
    HadamardKernel.module()  # compile outside timing
    shift, scale = 0.03, 0.02
    # Baseline for "transform, then a separate quantize": a one-pass vectorised quantize kernel
    # (8 elements per thread, 16-byte loads), i.e. the best an unfused second pass can do.
    quant_mod = cp.RawModule(code=QUANT_SRC, options=("-std=c++17",),
                             name_expressions=["quant8<float>", "quant8<__half>"])
    results = {
        "device": torch.cuda.get_device_name(0),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__, "cupy": cp.__version__, "python": platform.python_version(),
        "numel": numel, "warmup": args.warmup, "repeats": args.repeats, "inner": args.inner, "rows": [],
    }
    stream_ptr = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731

    def timed(fn, inner=None):
        return time_op(fn, torch, args.warmup, args.repeats, args.inner if inner is None else inner)

    for dt_name in args.dtypes:
        tdt = getattr(torch, dt_name)
        esz = torch.tensor([], dtype=tdt).element_size()
        x = torch.randn(numel, device=dev, dtype=tdt)
        y = torch.empty_like(x)
        q = torch.empty(numel, device=dev, dtype=torch.int8)
        rw = 2 * numel * esz
        qfn = quant_mod.get_function("quant8<float>" if dt_name == "float32" else "quant8<__half>")
        groups = numel // 8
        qblocks = min((groups + 255) // 256, 1 << 20)
        for n in args.n:
            rows = numel // n
            ext = cp.cuda.ExternalStream(stream_ptr())
            t_copy = timed(lambda: y.copy_(x))
            bw_copy = rw / t_copy
            H = torch.from_numpy(hadamard_matrix(n)).to(dev, tdt)
            x2 = x.view(rows, n)
            y2 = y.view(rows, n)
            t_mm = timed(lambda: torch.matmul(x2, H, out=y2))

            def run_had(e=None, r=None, tb=THREADS_PER_BLOCK):
                kern.launch(x.data_ptr(), y.data_ptr(), rows, n, n, dt_name, stream=stream_ptr(),
                            elems_per_thread=e, rows_per_thread=r, threads_per_block=tb)

            t_had = timed(run_had)
            variants = {}
            if args.sweep:
                # elems-per-thread E x thread-slots per iteration R at the default block size, then
                # block sizes at the default E, R
                for e in ELEMS_PER_THREAD:
                    if e <= n and n // e <= 32 and e >= 2:
                        for r in ROWS_PER_THREAD:
                            if e * r <= 32:
                                variants[f"E{e}R{r}"] = rw / timed(lambda e=e, r=r: run_had(e, r)) / 1e12
                for tb in (64, 128, 256):
                    variants[f"threads{tb}"] = rw / timed(lambda tb=tb: run_had(tb=tb)) / 1e12

            def run_fused():
                kern.launch(x.data_ptr(), q.data_ptr(), rows, n, n, dt_name, quantize=True, shift=shift,
                            scale=scale, stream=stream_ptr())

            def run_unfused():
                run_had()
                with ext:
                    qfn((qblocks,), (256,), (np.uint64(y.data_ptr()), np.uint64(q.data_ptr()), np.int64(groups),
                                            np.float32(shift), np.float32(scale)))

            def run_unfused_torch():
                run_had()
                torch.clamp(torch.round((y.float() - shift) / scale), -128, 127, out=None).to(torch.int8)

            t_fused = timed(run_fused)
            t_unfused = timed(run_unfused)
            t_unfused_torch = timed(run_unfused_torch, inner=1)
            # the same kernel and copy timed one launch per event pair (the method of earlier runs):
            # includes host launch overhead whenever it exceeds the GPU's queue
            t_had_single = timed(run_had, inner=1)
            t_copy_single = timed(lambda: y.copy_(x), inner=1)
            row = {
                "dtype": dt_name, "n": n, "rows": rows, "elems_per_thread": default_elems_per_thread(n, dt_name),
                "rows_per_thread": default_rows_per_thread(default_elems_per_thread(n, dt_name), dt_name),
                "threads_per_block": THREADS_PER_BLOCK,
                "copy_s": t_copy, "copy_TBps": bw_copy / 1e12,
                "matmul_s": t_mm, "matmul_TBps": rw / t_mm / 1e12,
                "hadamard_s": t_had, "hadamard_TBps": rw / t_had / 1e12,
                "hadamard_pct_of_copy": 100.0 * (rw / t_had) / bw_copy,
                "speedup_vs_matmul": t_mm / t_had,
                "fused_quant_s": t_fused, "fused_quant_TBps": (numel * esz + numel) / t_fused / 1e12,
                "unfused_quant_s": t_unfused, "unfused_quant_torch_s": t_unfused_torch,
                "fused_speedup_vs_unfused": t_unfused / t_fused,
                "single_launch_timing": {"copy_TBps": rw / t_copy_single / 1e12,
                                         "hadamard_TBps": rw / t_had_single / 1e12,
                                         "hadamard_pct_of_copy": 100.0 * t_copy_single / t_had_single},
                "sweep_TBps": variants,
            }
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
        del x, y, q
        torch.cuda.empty_cache()

    if args.sweep:
        print()
        for r in results["rows"]:
            print(r["dtype"], r["n"], " ".join(f"{k}={v:.3f}" for k, v in r["sweep_TBps"].items()))
    hdr = (f"{'dtype':8} {'n':>5} {'copy TB/s':>10} {'cuBLAS TB/s':>12} {'WHT TB/s':>9} {'%copy':>6} "
           f"{'x cuBLAS':>8} {'fused us':>9} {'unfused us':>10} {'fused x':>8} {'1-launch %copy':>15}")
    print()
    print(f"# {results['device']}, {results['date_utc']} UTC, N = 2^{args.log2_elems} elements, "
          f"median of {args.repeats} x {args.inner} launches")
    print(hdr)
    for r in results["rows"]:
        print(f"{r['dtype']:8} {r['n']:>5} {r['copy_TBps']:>10.3f} {r['matmul_TBps']:>12.3f} "
              f"{r['hadamard_TBps']:>9.3f} {r['hadamard_pct_of_copy']:>6.1f} {r['speedup_vs_matmul']:>8.2f} "
              f"{r['fused_quant_s'] * 1e6:>9.1f} {r['unfused_quant_s'] * 1e6:>10.1f} "
              f"{r['fused_speedup_vs_unfused']:>8.2f} {r['single_launch_timing']['hadamard_pct_of_copy']:>15.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

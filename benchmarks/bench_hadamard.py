#!/usr/bin/env python3
"""Benchmark the compsrt Hadamard kernel on a CUDA GPU.

Effective bandwidth = (bytes read + bytes written) / median kernel time, on N = 2^27
elements (rows = N / n, unpadded: m = n), against (a) a device-to-device copy of the same
tensor and (b) a cuBLAS matmul by the dense orthonormal Hadamard matrix (PyTorch), all
measured in the same run with CUDA events (median of --repeats after --warmup launches).
The fused quantizing kernel (x -> INT8 codes) is compared with the transform followed by a
separate one-pass quantize kernel (CuPy elementwise) and with PyTorch quantize ops.

    PYTHONPATH=. python3 benchmarks/bench_hadamard.py --json out.json [--sweep]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compsrt.plugins import hadamard_matrix  # noqa: E402
from compsrt.plugins.kernel import ELEMS_PER_THREAD, HadamardKernel, default_elems_per_thread  # noqa: E402


def time_op(fn, torch, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) * 1e-3)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log2-elems", type=int, default=27)
    ap.add_argument("--n", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32"])
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--sweep", action="store_true", help="also time every valid elems-per-thread variant")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)

    import cupy as cp
    import torch

    dev = torch.device("cuda")
    numel = 1 << args.log2_elems
    kern = HadamardKernel()
    HadamardKernel.module()  # compile outside timing
    shift, scale = 0.03, 0.02
    quant_kernel = cp.ElementwiseKernel(
        "T y, float32 shift, float32 scale", "int8 q",
        "float v = rintf(__fdiv_rn((float)y - shift, scale)); q = (signed char)fminf(fmaxf(v, -128.f), 127.f);",
        "compsrt_bench_quantize",
    )
    results = {
        "device": torch.cuda.get_device_name(0),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__, "cupy": cp.__version__, "python": platform.python_version(),
        "numel": numel, "warmup": args.warmup, "repeats": args.repeats, "rows": [],
    }
    stream_ptr = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731

    for dt_name in args.dtypes:
        tdt = getattr(torch, dt_name)
        esz = torch.tensor([], dtype=tdt).element_size()
        x = torch.randn(numel, device=dev, dtype=tdt)
        y = torch.empty_like(x)
        q = torch.empty(numel, device=dev, dtype=torch.int8)
        rw = 2 * numel * esz
        t_copy = time_op(lambda: y.copy_(x), torch, args.warmup, args.repeats)
        bw_copy = rw / t_copy
        for n in args.n:
            rows = numel // n
            H = torch.from_numpy(hadamard_matrix(n)).to(dev, tdt)
            x2 = x.view(rows, n)
            y2 = y.view(rows, n)
            t_mm = time_op(lambda: torch.matmul(x2, H, out=y2), torch, args.warmup, args.repeats)

            def run_had(e=None):
                kern.launch(x.data_ptr(), y.data_ptr(), rows, n, n, dt_name, stream=stream_ptr(),
                            elems_per_thread=e)

            t_had = time_op(run_had, torch, args.warmup, args.repeats)
            variants = {}
            if args.sweep:
                for e in ELEMS_PER_THREAD:
                    if e <= n and n // e <= 32 and e >= 4:
                        variants[e] = rw / time_op(lambda e=e: run_had(e), torch, args.warmup, args.repeats) / 1e12

            def run_fused():
                kern.launch(x.data_ptr(), q.data_ptr(), rows, n, n, dt_name, quantize=True, shift=shift,
                            scale=scale, stream=stream_ptr())

            yc = cp.asarray(y)  # zero-copy views (CUDA array interface)
            qc = cp.asarray(q)

            def run_unfused():
                run_had()
                with cp.cuda.ExternalStream(stream_ptr()):
                    quant_kernel(yc, cp.float32(shift), cp.float32(scale), qc)

            def run_unfused_torch():
                run_had()
                torch.clamp(torch.round((y.float() - shift) / scale), -128, 127, out=None).to(torch.int8)

            t_fused = time_op(run_fused, torch, args.warmup, args.repeats)
            t_unfused = time_op(run_unfused, torch, args.warmup, args.repeats)
            t_unfused_torch = time_op(run_unfused_torch, torch, args.warmup, args.repeats)
            row = {
                "dtype": dt_name, "n": n, "rows": rows, "elems_per_thread": default_elems_per_thread(n),
                "copy_s": t_copy, "copy_TBps": bw_copy / 1e12,
                "matmul_s": t_mm, "matmul_TBps": rw / t_mm / 1e12,
                "hadamard_s": t_had, "hadamard_TBps": rw / t_had / 1e12,
                "hadamard_pct_of_copy": 100.0 * (rw / t_had) / bw_copy,
                "speedup_vs_matmul": t_mm / t_had,
                "fused_quant_s": t_fused, "fused_quant_TBps": (numel * esz + numel) / t_fused / 1e12,
                "unfused_quant_s": t_unfused, "unfused_quant_torch_s": t_unfused_torch,
                "fused_speedup_vs_unfused": t_unfused / t_fused,
                "sweep_TBps_by_elems_per_thread": variants,
            }
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
        del x, y, q
        torch.cuda.empty_cache()

    hdr = (f"{'dtype':8} {'n':>5} {'copy TB/s':>10} {'cuBLAS TB/s':>12} {'WHT TB/s':>9} {'%copy':>6} "
           f"{'x cuBLAS':>8} {'fused us':>9} {'unfused us':>10} {'fused x':>8}")
    print()
    print(f"# {results['device']}, {results['date_utc']} UTC, N = 2^{args.log2_elems} elements, "
          f"median of {args.repeats}")
    print(hdr)
    for r in results["rows"]:
        print(f"{r['dtype']:8} {r['n']:>5} {r['copy_TBps']:>10.3f} {r['matmul_TBps']:>12.3f} "
              f"{r['hadamard_TBps']:>9.3f} {r['hadamard_pct_of_copy']:>6.1f} {r['speedup_vs_matmul']:>8.2f} "
              f"{r['fused_quant_s'] * 1e6:>9.1f} {r['unfused_quant_s'] * 1e6:>10.1f} "
              f"{r['fused_speedup_vs_unfused']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

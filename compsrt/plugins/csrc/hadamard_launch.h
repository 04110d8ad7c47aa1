// SPDX-License-Identifier: Apache-2.0
// C ABI of the Hadamard kernel launcher (see hadamard_kernels.cuh for the semantics).
#pragma once
#include <cuda_runtime_api.h>

#define COMPSRT_DTYPE_FP32 0
#define COMPSRT_DTYPE_FP16 1

#ifdef __cplusplus
extern "C" {
#endif

// 1 if (n, m) is supported: n a power of two in [2, 1024], 1 <= m <= n.
int compsrtHadamardValidate(int n, int m);

// y[r, :n] = H_n pad(x[r, :m]) / sqrt(n) for r < rows (both row-major, contiguous).
// dtype: COMPSRT_DTYPE_FP32 / COMPSRT_DTYPE_FP16 (input, and output unless quantize);
// quantize != 0: y is int8, y = saturate(rint((h - shift) / scale), qmin, qmax).
// Asynchronous on `stream`; returns the launch error, never synchronises.
cudaError_t compsrtHadamardLaunch(void const* x, void* y, int dtype, int quantize, long long rows, int n, int m,
    float shift, float scale, int qmin, int qmax, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

// SPDX-License-Identifier: Apache-2.0
// Host-side launcher for the shared Hadamard kernel (hadamard_kernels.cuh), compiled by nvcc
// into libcompsrt_plugins.so (C++ TensorRT plugin). The Python plugin compiles the same
// header with NVRTC (CuPy) and mirrors the launch logic in compsrt/plugins/kernel.py.
#include "hadamard_launch.h"
#include "hadamard_kernels.cuh"

#include <cstdint>

namespace
{

template <typename Tin, typename Tout, int E>
cudaError_t launchE(void const* x, void* y, long long rows, int n, int m, float shift, float scale, int qmin,
    int qmax, cudaStream_t stream)
{
    int logT = 0;
    while ((E << logT) < n)
        ++logT;
    int const threads = compsrt::kThreadsPerBlock;
    constexpr int R = compsrt::defaultRowsPerThread(E, static_cast<int>(sizeof(Tin)));
    long long const total = rows << logT;
    long long blocks = (total + threads * R - 1) / (threads * R);
    if (blocks > (1LL << 20))
        blocks = 1LL << 20; // block-stride loop covers the rest
    if (blocks < 1)
        return cudaSuccess;
    int const vecIn = (m == n) && (reinterpret_cast<std::uintptr_t>(x) % 16 == 0);
    int const vecOut = (reinterpret_cast<std::uintptr_t>(y) % 16 == 0);
    float const norm = static_cast<float>(1.0 / __builtin_sqrt(static_cast<double>(n)));
    compsrt::hadamardRowsKernel<Tin, Tout, E, R><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        static_cast<Tin const*>(x), static_cast<Tout*>(y), rows, m, logT, vecIn, vecOut, norm, shift, scale,
        static_cast<float>(qmin), static_cast<float>(qmax));
    return cudaGetLastError();
}

template <typename Tin, typename Tout>
cudaError_t launchT(void const* x, void* y, long long rows, int n, int m, int e, float shift, float scale,
    int qmin, int qmax, cudaStream_t stream)
{
    switch (e)
    {
    case 1: return launchE<Tin, Tout, 1>(x, y, rows, n, m, shift, scale, qmin, qmax, stream);
    case 2: return launchE<Tin, Tout, 2>(x, y, rows, n, m, shift, scale, qmin, qmax, stream);
    case 4: return launchE<Tin, Tout, 4>(x, y, rows, n, m, shift, scale, qmin, qmax, stream);
    case 8: return launchE<Tin, Tout, 8>(x, y, rows, n, m, shift, scale, qmin, qmax, stream);
    case 16: return launchE<Tin, Tout, 16>(x, y, rows, n, m, shift, scale, qmin, qmax, stream);
    case 32: return launchE<Tin, Tout, 32>(x, y, rows, n, m, shift, scale, qmin, qmax, stream);
    default: return cudaErrorInvalidValue;
    }
}

bool isPow2(int v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

} // namespace

extern "C" int compsrtHadamardValidate(int n, int m)
{
    return (isPow2(n) && n >= 2 && n <= 1024 && m >= 1 && m <= n) ? 1 : 0;
}

extern "C" cudaError_t compsrtHadamardLaunch(void const* x, void* y, int dtype, int quantize, long long rows, int n,
    int m, float shift, float scale, int qmin, int qmax, cudaStream_t stream)
{
    if (!compsrtHadamardValidate(n, m) || rows < 0)
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    int const e = compsrt::defaultElemsPerThread(n, dtype == COMPSRT_DTYPE_FP16 ? 2 : 4);
    if (dtype == COMPSRT_DTYPE_FP32)
    {
        return quantize ? launchT<float, signed char>(x, y, rows, n, m, e, shift, scale, qmin, qmax, stream)
                        : launchT<float, float>(x, y, rows, n, m, e, shift, scale, qmin, qmax, stream);
    }
    if (dtype == COMPSRT_DTYPE_FP16)
    {
        return quantize ? launchT<__half, signed char>(x, y, rows, n, m, e, shift, scale, qmin, qmax, stream)
                        : launchT<__half, __half>(x, y, rows, n, m, e, shift, scale, qmin, qmax, stream);
    }
    return cudaErrorInvalidValue;
}

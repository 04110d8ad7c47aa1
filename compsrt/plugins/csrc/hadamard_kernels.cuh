// SPDX-License-Identifier: Apache-2.0
// compsrt: fast orthonormal Walsh-Hadamard transform along the last axis.
//
// This header is the single source of the CUDA kernel. It is compiled
//   * at run time by NVRTC through CuPy (compsrt/plugins/kernel.py, Python plugin), and
//   * ahead of time by nvcc (csrc/hadamard_launch.cu -> libcompsrt_plugins.so, C++ plugin).
// It must therefore stay NVRTC-compatible: no host-only standard headers.
//
// Semantics (per row of length n, input row of real width m <= n, zero-padded to n):
//   y = H_n x / sqrt(n),  H_n the Sylvester Hadamard matrix, H[i][j] = (-1)^popcount(i & j)
// computed in FP32 whatever the I/O type. The fused quantizing variant writes INT8 codes
//   q = saturate(round_half_even((y - shift) / scale), qmin, qmax)
// from the FP32 y (it is never rounded to FP16 first), i.e. ONNX QuantizeLinear semantics
// with zero point 0 applied to (y - shift).
//
// Work decomposition: a row is owned by T = n / E consecutive lanes of one warp (T <= 32);
// each lane holds E elements in registers, as E / V vectors of V = 16 / sizeof(in) elements
// interleaved across the T lanes (lane t holds vectors t, t + T, t + 2T, ...), so that every
// load and store instruction of a warp touches one contiguous span. Element bits map to
// register bits (the vector index j and the vector number k) or to lane bits, so log2(E)
// butterfly stages run inside the thread and log2(T) across lanes through __shfl_xor_sync. With E = n (T = 1) a
// thread owns a whole row and no shuffles are needed. Loads/stores are 16-byte vectors
// when the row is unpadded and the base pointer is 16-byte aligned, else scalar with a
// bounds check (m = 10, 60, 120 need that: their rows are not 16-byte aligned).
// Memory side (measured on the H200, docs/plugins.md, Benchmark): each thread first loads the raw
// input of all its R thread-slots, then converts, transforms and stores one slot at a time (only
// E floats live), with plain loads/stores, in one-shot grids of kThreadsPerBlock = 128 threads.
// 128-thread blocks were as fast as or faster than 256/512 at every n, and faster than persistent
// or software-pipelined grids (register prefetch, cp.async, bulk copy); with them the cache hints
// (.cs streaming loads/stores, .nc loads) made no difference beyond noise.
#pragma once

#include <cuda_fp16.h>

namespace compsrt
{

// Threads per block of the default launch, shared by the Python and C++ launchers
// (kernel.py::THREADS_PER_BLOCK mirrors it): on the H200, 128 was faster than 256 and 512 at
// every n and dtype, and 64 was as fast except for FP16 n = 16 (slower) (docs/plugins.md); the
// kernel accepts any multiple of 32 up to 256.
constexpr int kThreadsPerBlock = 128;

// Default thread-slots per thread and loop iteration (template R of the kernel), shared by
// the Python and C++ launchers (kernel.py::default_rows_per_thread mirrors it). R = 2, 4 were
// within noise of R = 1 on the H200 (docs/plugins.md), so the default is the simplest.
__host__ __device__ constexpr int defaultRowsPerThread(int, int)
{
    return 1;
}

template <typename T>
__device__ __forceinline__ float toFloat(T v);
template <>
__device__ __forceinline__ float toFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ float toFloat<__half>(__half v)
{
    return __half2float(v);
}

// Copy BYTES bytes between 16-byte aligned register buffers and global memory with the widest
// plain vector accesses the size allows (the global address must be aligned to that width).
template <int BYTES>
__device__ __forceinline__ void copyRaw(void* dst, void const* src)
{
    if constexpr (BYTES % 16 == 0)
    {
#pragma unroll
        for (int k = 0; k < BYTES / 16; ++k)
            reinterpret_cast<uint4*>(dst)[k] = reinterpret_cast<uint4 const*>(src)[k];
    }
    else if constexpr (BYTES % 8 == 0)
    {
#pragma unroll
        for (int k = 0; k < BYTES / 8; ++k)
            reinterpret_cast<uint2*>(dst)[k] = reinterpret_cast<uint2 const*>(src)[k];
    }
    else if constexpr (BYTES % 4 == 0)
    {
#pragma unroll
        for (int k = 0; k < BYTES / 4; ++k)
            reinterpret_cast<unsigned int*>(dst)[k] = reinterpret_cast<unsigned int const*>(src)[k];
    }
    else if constexpr (BYTES % 2 == 0)
    {
#pragma unroll
        for (int k = 0; k < BYTES / 2; ++k)
            reinterpret_cast<unsigned short*>(dst)[k] = reinterpret_cast<unsigned short const*>(src)[k];
    }
    else
    {
#pragma unroll
        for (int k = 0; k < BYTES; ++k)
            reinterpret_cast<unsigned char*>(dst)[k] = reinterpret_cast<unsigned char const*>(src)[k];
    }
}

template <typename Tout>
struct OutConv;
template <>
struct OutConv<float>
{
    __device__ __forceinline__ static float conv(float y, float, float, float, float)
    {
        return y;
    }
};
template <>
struct OutConv<__half>
{
    __device__ __forceinline__ static __half conv(float y, float, float, float, float)
    {
        return __float2half_rn(y);
    }
};
template <>
struct OutConv<signed char>
{
    // q = saturate(rint((y - shift) / scale), qmin, qmax); IEEE division (no fast math),
    // rintf rounds half to even. NaN inputs give qmin.
    __device__ __forceinline__ static signed char conv(float y, float shift, float scale, float qmin, float qmax)
    {
        float q = rintf(__fdiv_rn(y - shift, scale));
        q = fminf(fmaxf(q, qmin), qmax);
        return static_cast<signed char>(__float2int_rn(q));
    }
};

template <typename A, typename B>
struct IsSame
{
    static constexpr bool value = false;
};
template <typename A>
struct IsSame<A, A>
{
    static constexpr bool value = true;
};

// Register <-> 16-byte buffer conversions (FP16 in pairs: one cvt per two elements).
template <typename Tin, int V>
__device__ __forceinline__ void bufToFloat(float* dst, Tin const* buf)
{
    if constexpr (IsSame<Tin, __half>::value && V % 2 == 0)
    {
#pragma unroll
        for (int j = 0; j < V / 2; ++j)
        {
            float2 const f = __half22float2(reinterpret_cast<__half2 const*>(buf)[j]);
            dst[2 * j] = f.x;
            dst[2 * j + 1] = f.y;
        }
    }
    else
    {
#pragma unroll
        for (int j = 0; j < V; ++j)
            dst[j] = toFloat<Tin>(buf[j]);
    }
}

// y * norm -> output buffer (FP16 in pairs: one cvt per two elements, same rounding).
template <typename Tout, int V>
__device__ __forceinline__ void floatToBuf(Tout* ob, float const* v, float norm, float shift, float scale,
    float qmin, float qmax)
{
    if constexpr (IsSame<Tout, __half>::value && V % 2 == 0)
    {
#pragma unroll
        for (int j = 0; j < V / 2; ++j)
            reinterpret_cast<__half2*>(ob)[j] = __floats2half2_rn(v[2 * j] * norm, v[2 * j + 1] * norm);
    }
    else
    {
#pragma unroll
        for (int j = 0; j < V; ++j)
            ob[j] = OutConv<Tout>::conv(v[j] * norm, shift, scale, qmin, qmax);
    }
}

// Kernel. Template: input type, output type (same as input, or signed char = INT8 codes),
// E = elements per thread (power of two, 1..32), R = independent thread-slots per thread and
// loop iteration (1, 2, 4): the raw input of all R slots is loaded before any arithmetic, then
// each slot is converted, transformed and stored in turn. Run time: log2 of threads per row
// (n = E << logT, logT <= 5), m = real input width, vecIn/vecOut = 16-byte path allowed.
// Grid: any; a block-stride loop covers all rows (R * blockDim.x slots per block and
// iteration); blockDim.x must be a multiple of 32, at most 256.
template <typename Tin, typename Tout, int E, int R = defaultRowsPerThread(E, static_cast<int>(sizeof(Tin)))>
__global__ void __launch_bounds__(256) hadamardRowsKernel(Tin const* __restrict__ x, Tout* __restrict__ y,
    long long rows, int m, int logT, int vecIn, int vecOut, float norm, float shift, float scale, float qmin,
    float qmax)
{
    // V = elements per 16-byte vector (or E if smaller): the unit of one load.
    constexpr int V = (E < 16 / static_cast<int>(sizeof(Tin))) ? E : 16 / static_cast<int>(sizeof(Tin));
    int const T = 1 << logT;
    int const n = E << logT;
    long long const total = rows << logT;
    long long const stride = static_cast<long long>(gridDim.x) * blockDim.x * R;
    for (long long base = static_cast<long long>(blockIdx.x) * blockDim.x * R; base < total; base += stride)
    {
        // The loop bound is uniform across the block, so every lane of a warp reaches the
        // shuffles below; lanes past the end work on zeros and store nothing. Slot r of a
        // thread is g = base + r * blockDim.x + threadIdx.x: per r, a warp still covers one
        // contiguous span.
        // Register i = k * V + j of slot r holds row element (k * T + t) * V + j: every
        // load/store instruction k of a warp covers one contiguous span (full-line coalescing).
        __align__(16) Tin raw[R][E];
        int const t = static_cast<int>((base + threadIdx.x) & (T - 1)); // same for every r (blockDim % 32 == 0)
#pragma unroll
        for (int r = 0; r < R; ++r)
        {
            long long const g = base + r * static_cast<long long>(blockDim.x) + threadIdx.x;
            bool const valid = g < total;
            long long const row = g >> logT;
            if (valid && vecIn)
            {
                Tin const* src = x + row * n + t * V;
#pragma unroll
                for (int k = 0; k < E / V; ++k)
                    copyRaw<V * static_cast<int>(sizeof(Tin))>(&raw[r][k * V], src + k * T * V);
            }
            else
            {
                Tin const* src = x + row * m;
#pragma unroll
                for (int k = 0; k < E / V; ++k)
                {
#pragma unroll
                    for (int j = 0; j < V; ++j)
                    {
                        int const c = (k * T + t) * V + j;
                        raw[r][k * V + j] = (valid && c < m) ? src[c] : Tin(0.0f);
                    }
                }
            }
        }

#pragma unroll
        for (int r = 0; r < R; ++r)
        {
            float v[E];
#pragma unroll
            for (int k = 0; k < E / V; ++k)
                bufToFloat<Tin, V>(&v[k * V], &raw[r][k * V]);
            // In-thread stages (element strides 1 .. E/2).
#pragma unroll
            for (int h = 1; h < E; h <<= 1)
            {
#pragma unroll
                for (int i = 0; i < E; ++i)
                {
                    if ((i & h) == 0)
                    {
                        float const a = v[i];
                        float const b = v[i + h];
                        v[i] = a + b;
                        v[i + h] = a - b;
                    }
                }
            }
            // Cross-lane stages (element strides E .. n/2): partner lane = lane ^ (1 << s).
            // Lower lane: v + o, upper lane: o - v, as one exact FMA (sgn = +-1: sgn * v is exact).
            for (int s = 0; s < logT; ++s)
            {
                int const lm = 1 << s;
                float const sgn = (t & lm) ? -1.0f : 1.0f;
#pragma unroll
                for (int i = 0; i < E; ++i)
                {
                    float const o = __shfl_xor_sync(0xffffffffu, v[i], lm);
                    v[i] = __fmaf_rn(sgn, v[i], o);
                }
            }

            long long const g = base + r * static_cast<long long>(blockDim.x) + threadIdx.x;
            if (g < total)
            {
                Tout* dst = y + (g >> logT) * n + t * V;
#pragma unroll
                for (int k = 0; k < E / V; ++k)
                {
                    __align__(16) Tout ob[V];
                    floatToBuf<Tout, V>(ob, &v[k * V], norm, shift, scale, qmin, qmax);
                    if (vecOut)
                    {
                        copyRaw<V * static_cast<int>(sizeof(Tout))>(dst + k * T * V, ob);
                    }
                    else
                    {
#pragma unroll
                        for (int j = 0; j < V; ++j)
                            dst[k * T * V + j] = ob[j];
                    }
                }
            }
        }
    }
}

// Default elements-per-thread choice, shared by the Python and C++ launchers
// (compsrt/plugins/kernel.py::default_elems_per_thread mirrors it; keep them equal).
// From the H200 sweep (docs/plugins.md): FP32 best at E = 4..8, FP16 at E = 8 (n <= 16)
// or 16 (n >= 32); at least n / 32 so that a row fits in one warp; at most n.
__host__ __device__ inline int defaultElemsPerThread(int n, int inBytes)
{
    int e = (inBytes >= 4) ? 8 : (n <= 16 ? 8 : 16);
    if (e < n / 32)
        e = n / 32;
    if (e > n)
        e = n;
    return e;
}

} // namespace compsrt

// Philox4x32-10 (Random123 / curand constants) and the hawk::philox_uniforms layout, in ONE place for the
// C++ CPU op (csrc/cpu/philox.cpp, compiled by the host compiler) and the CUDA kernel (csrc/cuda/philox.cu).
// Spec, bit for bit: hawk_kernels/ops/reference/philox.py. No torch headers; the host part needs no CUDA.
//
//   key = (seed low 32 bits, seed high 32 bits); output element i uses counter block j = i / 4, lane i % 4,
//   counter = (j, stream, offset low 32 bits, offset high 32 bits); uniform = (x_lane >> 8) * 2^-24.
//   Per-row seeds or offsets (shape (R,), R == shape[0]): row r is the draw of (seed_r, offset_r) over shape[1:]
//   (seed_r = seed[r] for per-row seeds, else the one seed; offset_r likewise), i.e. i counted within the row.
//   A draw with one seed and one offset is one row of numel elements.
#pragma once

#include <cstdint>

#ifndef HAWK_HOST_DEVICE
#ifdef __CUDACC__
#define HAWK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HAWK_HOST_DEVICE inline
#endif
#endif

namespace hawk {
namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u;  // multipliers
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;  // key bumps (golden ratio, sqrt(3) - 1)
constexpr uint32_t kW1 = 0xBB67AE85u;
constexpr int kRounds = 10;
constexpr int64_t kMaxNumel = int64_t{1} << 34;  // 2^32 counter blocks of 4 lanes

struct Block {
  uint32_t x[4];
};

// low 32 bits of a * b; the high 32 bits go to *hi
HAWK_HOST_DEVICE uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
#ifdef __CUDA_ARCH__
  *hi = __umulhi(a, b);
  return a * b;
#else
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
#endif
}

// The raw block function: philox4x32-10 of counter `ctr` under key (k0, k1).
HAWK_HOST_DEVICE Block philox4x32_10(Block ctr, uint32_t k0, uint32_t k1) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(kM0, ctr.x[0], &hi0);
    const uint32_t lo1 = mulhilo(kM1, ctr.x[2], &hi1);
    ctr = Block{{hi1 ^ ctr.x[1] ^ k0, lo1, hi0 ^ ctr.x[3] ^ k1, lo0}};
  }
  return ctr;
}

// (x >> 8) * 2^-24: 24 random bits, exact in float32, in [0, 1 - 2^-24]
HAWK_HOST_DEVICE float to_uniform(uint32_t x) { return static_cast<float>(x >> 8) * 5.9604644775390625e-8f; }

// The four uniforms of counter block `block` (elements 4 * block .. 4 * block + 3).
HAWK_HOST_DEVICE Block uniform_bits(uint64_t seed, uint64_t offset, uint32_t stream, uint32_t block) {
  const Block ctr{{block, stream, static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace philox

#ifdef __CUDACC__
#include <cuda_runtime.h>

struct PhiloxArgs {
  const int64_t* seed;    // device memory: row r's key at seed[r * seed_stride] (read by the kernel: no host
  int64_t seed_stride;    //   sync, graph-replay safe); seed_stride 0 for one key
  const int64_t* offset;  // device memory: row r's offset at offset[r * offset_stride] (read by the kernel, as
  int64_t offset_stride;  //   seed); offset_stride 0 for one offset
  float* out;             // [rows, row_numel] out, 16-byte aligned
  int64_t rows;           // 1 for one seed and one offset
  int64_t row_numel;      // rows * row_numel <= philox::kMaxNumel
  uint32_t stream;
};

// Threads over (counter blocks of a row) x (rows), both grid-strided. The float4 store is used only where the
// row start is 16-byte aligned (row * row_numel % 4 == 0; always for row 0) and the block is whole.
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) philox_uniforms_kernel(PhiloxArgs a) {
  const int64_t row_blocks = (a.row_numel + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * BLOCK;
  for (int64_t row = blockIdx.y; row < a.rows; row += gridDim.y) {
    const uint64_t seed = static_cast<uint64_t>(a.seed[row * a.seed_stride]);
    const uint64_t offset = static_cast<uint64_t>(a.offset[row * a.offset_stride]);
    const int64_t row_start = row * a.row_numel;
    float* out = a.out + row_start;
    const bool aligned = (row_start & 3) == 0;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * BLOCK + threadIdx.x; j < row_blocks; j += stride) {
      const philox::Block x = philox::uniform_bits(seed, offset, a.stream, static_cast<uint32_t>(j));
      const int64_t first = 4 * j;
      if (aligned && first + 4 <= a.row_numel) {
        *reinterpret_cast<float4*>(out + first) =
            make_float4(philox::to_uniform(x.x[0]), philox::to_uniform(x.x[1]), philox::to_uniform(x.x[2]),
                        philox::to_uniform(x.x[3]));
      } else {
        for (int lane = 0; lane < 4 && first + lane < a.row_numel; ++lane) {
          out[first + lane] = philox::to_uniform(x.x[lane]);
        }
      }
    }
  }
}

inline cudaError_t launch_philox_uniforms(const PhiloxArgs& args, cudaStream_t stream) {
  constexpr int kBlock = 256;
  constexpr int64_t kMaxGrid = 65536;      // thread blocks in all: grid-stride beyond
  constexpr int64_t kMaxGridRows = 65535;  // CUDA's limit on grid.y: grid-stride over rows beyond it
  if (args.rows <= 0 || args.row_numel <= 0) return cudaSuccess;
  if (args.row_numel > philox::kMaxNumel / args.rows) return cudaErrorInvalidValue;
  const int64_t row_blocks = (args.row_numel + 3) / 4;
  const int64_t wanted = (row_blocks + kBlock - 1) / kBlock;
  // ~2^16 thread blocks in all, enough to fill the GPU: few along x when there are many rows
  const int64_t grid_y = args.rows < kMaxGridRows ? args.rows : kMaxGridRows;
  const int64_t cap_x = kMaxGrid / grid_y > 1 ? kMaxGrid / grid_y : 1;
  const int64_t grid_x = wanted < cap_x ? wanted : cap_x;
  philox_uniforms_kernel<kBlock><<<dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y)), kBlock, 0,
                                   stream>>>(args);
  return cudaGetLastError();
}

#endif  // __CUDACC__

}  // namespace hawk

// Shared device helpers for the hawk kernels: dtype loads and block-wide reductions. No torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

namespace hawk {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a > b ? a : b; }
};
struct MinIndexOp {
  __device__ __forceinline__ int operator()(int a, int b) const { return a < b ? a : b; }
};
struct MaxIndexOp {
  __device__ __forceinline__ int operator()(int a, int b) const { return a > b ? a : b; }
};

// Block-wide reductions whose result every thread receives (one __syncthreads pair each).
template <int BLOCK>
struct BlockOps {
  using FloatReduce = cub::BlockReduce<float, BLOCK>;
  using IntReduce = cub::BlockReduce<int, BLOCK>;
  using Scan = cub::BlockScan<float, BLOCK>;
  union TempStorage {
    typename FloatReduce::TempStorage float_reduce;
    typename IntReduce::TempStorage int_reduce;
    typename Scan::TempStorage scan;
  };
  TempStorage& temp;
  float& float_slot;
  int& int_slot;

  __device__ float sum(float x) {
    float r = FloatReduce(temp.float_reduce).Sum(x);
    return broadcast(r);
  }
  __device__ float max(float x) {
    float r = FloatReduce(temp.float_reduce).Reduce(x, MaxOp());
    return broadcast(r);
  }
  __device__ int int_sum(int x) { return broadcast_int(IntReduce(temp.int_reduce).Sum(x)); }
  __device__ int int_min(int x) { return broadcast_int(IntReduce(temp.int_reduce).Reduce(x, MinIndexOp())); }
  __device__ int int_max(int x) { return broadcast_int(IntReduce(temp.int_reduce).Reduce(x, MaxIndexOp())); }
  // inclusive prefix sum over the block; `total` receives the block aggregate
  __device__ float inclusive_scan(float x, float& total) {
    float out;
    Scan(temp.scan).InclusiveSum(x, out, total);
    __syncthreads();  // temp is reused by the next call
    return out;
  }

 private:
  // thread 0's value to every thread of the block, through a shared slot
  template <typename T>
  __device__ static T broadcast_through(T& slot, T r) {
    if (threadIdx.x == 0) slot = r;
    __syncthreads();
    r = slot;
    __syncthreads();
    return r;
  }
  __device__ float broadcast(float r) { return broadcast_through(float_slot, r); }
  __device__ int broadcast_int(int r) { return broadcast_through(int_slot, r); }
};

}  // namespace hawk

// draft_heads device code: the epilogues around the cuBLAS GEMMs (issued by csrc/cuda/draft_heads.cu).
//   resblock_epilogue: z_out = z_in + SiLU(acc + bias), fp32 math, all heads in one launch
//   log_softmax_epilogue: logits [H, T, V] (GEMM dtype) -> draft_logq [T, H, V] fp32, scaled by
//     1/temperature, one block per (head, token) row, online max/sum then one write pass.
// No torch headers; the launchers return a cudaError_t.
#pragma once

#include <algorithm>
#include <cstdint>

#include "hawk/common.cuh"

namespace hawk {

// Strides are in elements: the layer-0 GEMM gives acc as [T, H*d] (head stride d, token stride H*d), the
// per-head GEMMs of later layers as [H, T, d]; z_in has head stride 0 when every head reads the hidden state.
struct ResblockShape {
  int heads, tokens, width;
  int64_t z_head_stride, acc_head_stride, acc_token_stride, bias_head_stride;
};

template <typename T>
__global__ void resblock_epilogue_kernel(const T* z_in, const T* acc, const T* bias, T* z_out, ResblockShape s) {
  const int head = blockIdx.y;
  const int64_t per_head = static_cast<int64_t>(s.tokens) * s.width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_head;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = i / s.width;
    const int col = static_cast<int>(i % s.width);
    const float pre = to_float(acc[head * s.acc_head_stride + token * s.acc_token_stride + col]) +
                      to_float(bias[head * s.bias_head_stride + col]);
    const float silu = pre / (1.f + expf(-pre));
    z_out[head * per_head + i] = from_float<T>(to_float(z_in[head * s.z_head_stride + i]) + silu);
  }
}

template <int BLOCK, typename T>
__global__ void __launch_bounds__(BLOCK) log_softmax_epilogue_kernel(const T* logits, float* logq, int tokens,
                                                                     int heads, int vocab, float inv_temperature) {
  using Ops = BlockOps<BLOCK>;
  __shared__ typename Ops::TempStorage temp;
  __shared__ float float_slot;
  __shared__ int int_slot;
  Ops ops{temp, float_slot, int_slot};
  const int head = blockIdx.x / tokens, token = blockIdx.x % tokens;
  const T* in = logits + static_cast<int64_t>(blockIdx.x) * vocab;  // row (head, token) of [H, T, V]
  float* out = logq + (static_cast<int64_t>(token) * heads + head) * vocab;
  float run_max = -INFINITY, run_sum = 0.f;  // online softmax statistics of this thread's entries
  for (int v = threadIdx.x; v < vocab; v += BLOCK) {
    const float x = to_float(in[v]) * inv_temperature;
    if (x > run_max) {
      run_sum = run_sum * expf(run_max - x) + 1.f;
      run_max = x;
    } else {
      run_sum += expf(x - run_max);
    }
  }
  const float row_max = ops.max(run_max);
  const float row_sum = ops.sum(run_max == -INFINITY ? 0.f : run_sum * expf(run_max - row_max));
  const float lse = row_max + logf(row_sum);
  for (int v = threadIdx.x; v < vocab; v += BLOCK) out[v] = to_float(in[v]) * inv_temperature - lse;
}

template <typename T>
cudaError_t launch_resblock_epilogue(const T* z_in, const T* acc, const T* bias, T* z_out, const ResblockShape& shape,
                                     cudaStream_t stream) {
  const int64_t per_head = static_cast<int64_t>(shape.tokens) * shape.width;
  if (shape.heads == 0 || per_head == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((per_head + kThreads - 1) / kThreads, 1024));
  resblock_epilogue_kernel<T><<<dim3(blocks, shape.heads), kThreads, 0, stream>>>(z_in, acc, bias, z_out, shape);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_log_softmax_epilogue(const T* logits, float* logq, int tokens, int heads, int vocab,
                                        float inv_temperature, cudaStream_t stream) {
  constexpr int kBlock = 512;
  if (tokens == 0 || heads == 0) return cudaSuccess;
  log_softmax_epilogue_kernel<kBlock, T><<<tokens * heads, kBlock, 0, stream>>>(logits, logq, tokens, heads, vocab,
                                                                                 inv_temperature);
  return cudaGetLastError();
}

}  // namespace hawk

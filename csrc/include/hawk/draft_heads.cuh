// draft_heads device code (launched by csrc/cuda/draft_heads.cu). Two paths:
//   small T (bf16/fp16, at most kSkinnyMaxRows rows per GEMM, sm_80+): weight-streaming tensor-core kernels
//     with the epilogues fused (skinny_resblock_kernel: one launch per layer for all heads;
//     skinny_projection_kernel: fp32 scaled logits + per-tile softmax statistics, then
//     log_softmax_finish_kernel subtracts log-sum-exp in place). See "small-T path" below.
//   otherwise: the epilogues around the cuBLAS GEMMs:
//     resblock_epilogue: z_out = z_in + SiLU(acc + bias), fp32 math, all heads in one launch
//     log_softmax_epilogue: logits [H, T, V] (GEMM dtype) -> draft_logq [T, H, V] fp32, scaled by
//       1/temperature, one block per (head, token) row, online max/sum then one write pass.
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


// ------------------------------------------------------------------------------------------------ small-T path
// Weight streaming for few rows (decode: T = 2..32 tokens; the shared projection folds the heads into the rows,
// H*T). out[r, n] = sum_k x[r, k] * W[n, k] is a GEMV-like product whose cost is reading W once, so each
// block owns kSkinnyCols output columns of one head over ALL rows and the whole K: it reads its W rows once
// with 16-byte loads and never writes an accumulator to global memory; the epilogue (ResBlock bias + SiLU +
// residual, or temperature + per-tile softmax statistics) runs on the block's fp32 sums.
//
// Tensor cores: mma.sync m16n8k16 (bf16/fp16 operands, fp32 accumulate) with the WEIGHTS as the A operand
// (16 output columns) and the activations as B (8 rows per n-tile, NT n-tiles cover up to 8*NT rows). A dot
// product's terms may be taken in any order, so each lane loads two whole 16-byte chunks of a W row per 64-k
// step (k0 + 8*tid + 0..7 and k0 + 32 + 8*tid + 0..7: every load instruction of the warp reads 8 rows x 64
// contiguous bytes) and the same chunks of its x row, and feeds word q = 0..7 of those 16 elements to mma step
// q / 2 as the fragment register of logical k {2*tid, 2*tid+1} (q even) or {2*tid+8, 2*tid+9} (q odd): A and B
// use one permutation of k, so the product is exact up to fp32 summation order.
// The 8 warps of a block split K (64-k steps w, w+8, ...); their partial sums meet in shared memory and are
// added in warp order 0..7 (deterministic). fp32 inputs keep the cuBLAS path (no TF32 rounding).
constexpr int kSkinnyWarps = 8;
constexpr int kSkinnyThreads = 32 * kSkinnyWarps;
constexpr int kSkinnyCols = 32;     // output columns per block: two m16 tiles
constexpr int kSkinnyStepK = 64;    // k per warp step: 4 mma k16 steps
constexpr int kSkinnyMaxRows = 32;  // rows (tokens, or heads x tokens) the path takes: NT <= 4 n-tiles of 8
constexpr int kPartialStride = kSkinnyCols + 4;  // floats per partial row (+4: conflict-free fragment stores)
template <int NT>  // blocks per SM the register budget is sized for (NT = 4 needs more than 128 registers)
constexpr int kSkinnyMinBlocks = NT <= 2 ? 2 : 1;

// W [cols, k] of head h at w + h * w_head_stride; x row r of head h at x + h * x_head_stride + r * k. k % 8 == 0
// and 16-byte aligned x and w (skinny_supported).
template <typename T>
struct SkinnyOperands {
  const T* x;
  const T* w;
  int64_t x_head_stride, w_head_stride;
  int rows, cols, k;
};

template <typename T>
struct Mma;
template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();  // the host takes this path on sm_80+ only (skinny_supported)
#endif
  }
};
template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
  }
};

// Word q (0..7) of the 16 elements a lane holds for one row and one 64-k step (chunk q / 4, word q % 4).
__device__ __forceinline__ uint32_t chunk_word(const uint4 (&c)[2], int q) {
  const uint4& v = c[q >> 2];
  switch (q & 3) {
    case 0: return v.x;
    case 1: return v.y;
    case 2: return v.z;
    default: return v.w;
  }
}

// The lane's two 16-byte chunks of `row` (elements k0 + 8*tid + 0..7 and k0 + 32 + 8*tid + 0..7); zeros
// outside the row range or past k (k % 8 == 0: a chunk is all inside or all outside). The load itself is
// unconditional (no branch): an outside chunk reads element 0 of the row (row_ptr is a valid row) instead.
template <typename T>
__device__ __forceinline__ void load_chunks(uint4 (&c)[2], const T* row_ptr, bool row_ok, int k0, int tid, int k) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int kk = k0 + 32 * half + 8 * tid;
    const bool ok = row_ok && kk < k;
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(row_ptr + (ok ? kk : 0)));
    c[half] = ok ? v : make_uint4(0, 0, 0, 0);
  }
}

// One warp's W fragment of a 64-k step: [m-tile i][row g or g + 8][chunk].
template <typename T>
__device__ __forceinline__ void load_weight_step(uint4 (&w)[2][2][2], const T* const (&w_rows)[2][2],
                                                 const bool (&w_ok)[2][2], int k0, int tid, int k) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int r = 0; r < 2; ++r) load_chunks(w[i][r], w_rows[i][r], w_ok[i][r], k0, tid, k);
  }
}

// acc[i][j] += W tile i (16 cols) x x tile j (8 rows) over one 64-k step.
template <int NT, typename T>
__device__ __forceinline__ void mma_step(float (&acc)[2][NT][4], const uint4 (&w)[2][2][2],
                                         const T* const (&x_rows)[NT], const bool (&x_ok)[NT], int k0, int tid,
                                         int k) {
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    uint4 x[2];
    load_chunks(x, x_rows[j], x_ok[j], k0, tid, k);
#pragma unroll
    for (int s = 0; s < 4; ++s) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const uint32_t a[4] = {chunk_word(w[i][0], 2 * s), chunk_word(w[i][1], 2 * s), chunk_word(w[i][0], 2 * s + 1),
                               chunk_word(w[i][1], 2 * s + 1)};
        Mma<T>::run(acc[i][j], a, chunk_word(x, 2 * s), chunk_word(x, 2 * s + 1));
      }
    }
  }
}

// The block's [8*NT rows][kSkinnyCols] fp32 sums, as kSkinnyWarps partials in shared memory: partial[w][r][c].
// The caller syncs, then adds partial[0..7][r][c] in that order (skinny_sum).
template <int NT, typename T>
__device__ __forceinline__ void skinny_partials(const SkinnyOperands<T>& op, int head, int col0, float* partial) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, tid = lane & 3;
  const T* w_head = op.w + head * op.w_head_stride;
  const T* x_head = op.x + head * op.x_head_stride;
  const T* w_rows[2][2];
  bool w_ok[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int n = col0 + 16 * i + 8 * r + g;
      w_ok[i][r] = n < op.cols;
      w_rows[i][r] = w_head + static_cast<int64_t>(w_ok[i][r] ? n : 0) * op.k;
    }
  }
  const T* x_rows[NT];
  bool x_ok[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int row = 8 * j + g;
    x_ok[j] = row < op.rows;
    x_rows[j] = x_head + static_cast<int64_t>(x_ok[j] ? row : 0) * op.k;
  }
  float acc[2][NT][4] = {};
  const int steps = (op.k + kSkinnyStepK - 1) / kSkinnyStepK;
  uint4 cur[2][2][2], next[2][2][2];
  if (warp < steps) load_weight_step(cur, w_rows, w_ok, warp * kSkinnyStepK, tid, op.k);
  for (int step = warp; step < steps; step += kSkinnyWarps) {
    // the next step's weights are in flight while this step's mma run (warp-uniform branch)
    const int ahead = step + kSkinnyWarps;
    if (ahead < steps) load_weight_step(next, w_rows, w_ok, ahead * kSkinnyStepK, tid, op.k);
    mma_step<NT>(acc, cur, x_rows, x_ok, step * kSkinnyStepK, tid, op.k);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int r = 0; r < 2; ++r) cur[i][r][0] = next[i][r][0], cur[i][r][1] = next[i][r][1];
  }
  // accumulator c of tile (i, j): column 16*i + g + 8*(c >= 2), row 8*j + 2*tid + (c & 1)
  float* mine = partial + warp * (8 * NT) * kPartialStride;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        mine[(8 * j + 2 * tid + (c & 1)) * kPartialStride + 16 * i + g + 8 * (c >> 1)] = acc[i][j][c];
      }
    }
  }
}

template <int NT>
__device__ __forceinline__ float skinny_sum(const float* partial, int row, int col) {
  float sum = 0.f;
#pragma unroll
  for (int w = 0; w < kSkinnyWarps; ++w) sum += partial[(w * 8 * NT + row) * kPartialStride + col];
  return sum;
}

// z_out[h, r, n] = z_in[h, r, n] + SiLU(x[h, r] . W[h, n] + bias[h, n]); x = z_in (ResBlock), grid (col blocks, H).
template <int NT, typename T>
__global__ void __launch_bounds__(kSkinnyThreads, kSkinnyMinBlocks<NT>)
    skinny_resblock_kernel(SkinnyOperands<T> op, const T* bias, int64_t bias_head_stride, T* z_out) {
  __shared__ float partial[kSkinnyWarps * 8 * NT * kPartialStride];
  const int head = blockIdx.y, col0 = blockIdx.x * kSkinnyCols;
  skinny_partials<NT>(op, head, col0, partial);
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n = col0 + lane;
  if (n >= op.cols) return;
  const float b = to_float(bias[head * bias_head_stride + n]);
  const T* z_in = op.x + head * op.x_head_stride;
  T* out = z_out + static_cast<int64_t>(head) * op.rows * op.cols;
  for (int r = warp; r < op.rows; r += kSkinnyWarps) {
    const float pre = skinny_sum<NT>(partial, r, lane) + b;
    const float silu = pre / (1.f + expf(-pre));
    const float resid = to_float(z_in[static_cast<int64_t>(r) * op.k + n]);
    out[static_cast<int64_t>(r) * op.cols + n] = from_float<T>(resid + silu);
  }
}

// Projection: scaled logits of rows r = (head fold) and this block's kSkinnyCols vocabulary entries straight
// into draft_logq [T, H, V] (fp32), plus the tile's softmax statistics (max, sum of exp(x - max)) per row;
// log_softmax_finish_kernel merges the tiles and subtracts log-sum-exp in place. Row r of grid row y is head
// y + r / tokens, token r % tokens (shared lm_head: grid.y 1 and rows H*T; per-head: grid.y H and rows T).
struct SkinnyLogits {
  float* logq;
  float* tile_max;  // [T*H, tiles], row (token * heads + head)
  float* tile_sum;
  int tokens, heads, tiles;
  float inv_temperature;
};

template <int NT, typename T>
__global__ void __launch_bounds__(kSkinnyThreads, kSkinnyMinBlocks<NT>)
    skinny_projection_kernel(SkinnyOperands<T> op, SkinnyLogits out) {
  __shared__ float partial[kSkinnyWarps * 8 * NT * kPartialStride];
  const int col0 = blockIdx.x * kSkinnyCols;
  skinny_partials<NT>(op, blockIdx.y, col0, partial);
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, v = col0 + lane;
  for (int r = warp; r < op.rows; r += kSkinnyWarps) {
    const float logit = v < op.cols ? skinny_sum<NT>(partial, r, lane) * out.inv_temperature : -INFINITY;
    float tile_max = logit;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
    }
    float tile_sum = expf(logit - tile_max);  // 0 for the -inf columns past the vocabulary
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
    const int64_t q = static_cast<int64_t>(r % out.tokens) * out.heads + blockIdx.y + r / out.tokens;
    if (v < op.cols) out.logq[q * op.cols + v] = logit;
    if (lane == 0) {
      out.tile_max[q * out.tiles + blockIdx.x] = tile_max;
      out.tile_sum[q * out.tiles + blockIdx.x] = tile_sum;
    }
  }
}

// One block per draft_logq row: merge the tiles' statistics, subtract log-sum-exp in place.
template <int BLOCK>
__global__ void __launch_bounds__(BLOCK)
    log_softmax_finish_kernel(float* logq, const float* tile_max, const float* tile_sum, int vocab, int tiles) {
  using Ops = BlockOps<BLOCK>;
  __shared__ typename Ops::TempStorage temp;
  __shared__ float float_slot;
  __shared__ int int_slot;
  Ops ops{temp, float_slot, int_slot};
  const int64_t row = blockIdx.x;
  float m = -INFINITY;
  for (int t = threadIdx.x; t < tiles; t += BLOCK) m = fmaxf(m, tile_max[row * tiles + t]);
  const float row_max = ops.max(m);
  float s = 0.f;
  for (int t = threadIdx.x; t < tiles; t += BLOCK) {
    s += tile_sum[row * tiles + t] * expf(tile_max[row * tiles + t] - row_max);
  }
  const float lse = row_max + logf(ops.sum(s));
  float* out = logq + row * vocab;
  for (int v = threadIdx.x; v < vocab; v += BLOCK) out[v] -= lse;
}

// The small-T path takes bf16/fp16 rows of at most kSkinnyMaxRows, k % 8 == 0 and 16-byte aligned operands
// on sm_80+ (mma.sync bf16); anything else keeps the cuBLAS path.
template <typename T>
bool skinny_supported(const SkinnyOperands<T>& op, int sm_major) {
  constexpr bool half_type = sizeof(T) == 2;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return half_type && sm_major >= 8 && op.rows >= 1 && op.rows <= kSkinnyMaxRows && op.k % 8 == 0 && aligned(op.x) &&
         aligned(op.w) && op.x_head_stride % 8 == 0 && op.w_head_stride % 8 == 0;
}

template <int NT, typename T>
cudaError_t launch_skinny_nt(const SkinnyOperands<T>& op, int grid_y, const T* bias, int64_t bias_head_stride,
                             T* z_out, const SkinnyLogits* logits, cudaStream_t stream) {
  const dim3 grid((op.cols + kSkinnyCols - 1) / kSkinnyCols, grid_y);
  if (logits == nullptr) {
    skinny_resblock_kernel<NT, T><<<grid, kSkinnyThreads, 0, stream>>>(op, bias, bias_head_stride, z_out);
  } else {
    skinny_projection_kernel<NT, T><<<grid, kSkinnyThreads, 0, stream>>>(op, *logits);
  }
  return cudaGetLastError();
}

// NT = rows / 8 rounded up to 1, 2 or 4 n-tiles.
template <typename T>
cudaError_t launch_skinny(const SkinnyOperands<T>& op, int grid_y, const T* bias, int64_t bias_head_stride, T* z_out,
                          const SkinnyLogits* logits, cudaStream_t stream) {
  if (op.rows <= 0 || op.cols <= 0 || grid_y <= 0) return cudaSuccess;
  if (op.rows > kSkinnyMaxRows) return cudaErrorInvalidValue;
  if (op.rows <= 8) return launch_skinny_nt<1>(op, grid_y, bias, bias_head_stride, z_out, logits, stream);
  if (op.rows <= 16) return launch_skinny_nt<2>(op, grid_y, bias, bias_head_stride, z_out, logits, stream);
  return launch_skinny_nt<4>(op, grid_y, bias, bias_head_stride, z_out, logits, stream);
}

// ResBlock layer of all heads in one launch: z_out [H, rows, cols] (op.x is z_in, head stride 0 for layer 0).
template <typename T>
cudaError_t launch_skinny_resblock(const SkinnyOperands<T>& op, int heads, const T* bias, int64_t bias_head_stride,
                                   T* z_out, cudaStream_t stream) {
  return launch_skinny(op, heads, bias, bias_head_stride, z_out, static_cast<const SkinnyLogits*>(nullptr), stream);
}

// Projection + log-softmax: op.rows = H*T with grid_y 1 (shared lm_head) or T with grid_y H (per-head);
// logits.tile_max / tile_sum hold [T*H, ceil(V / kSkinnyCols)] floats.
template <typename T>
cudaError_t launch_skinny_projection(const SkinnyOperands<T>& op, int grid_y, const SkinnyLogits& logits,
                                     cudaStream_t stream) {
  const cudaError_t err = launch_skinny(op, grid_y, static_cast<const T*>(nullptr), 0, static_cast<T*>(nullptr),
                                        &logits, stream);
  if (err != cudaSuccess || op.rows == 0 || op.cols == 0) return err;
  constexpr int kBlock = 256;
  log_softmax_finish_kernel<kBlock><<<logits.tokens * logits.heads, kBlock, 0, stream>>>(
      logits.logq, logits.tile_max, logits.tile_sum, op.cols, logits.tiles);
  return cudaGetLastError();
}

}  // namespace hawk

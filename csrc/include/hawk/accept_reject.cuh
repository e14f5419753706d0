// accept_reject device code, per-node parallel. The contract is the docstring of
// hawk_kernels/ops/reference/accept_reject.py; the decisions are the reference's given the same uniforms (fp32
// math). No torch headers: raw pointers, sizes, a stream; the launchers return a cudaError_t.
//
// The decision taken at a node (the accepted child, or none and the bonus token sampled from the final residual)
// depends only on that node's target row, its children's tokens and draft laws and its uniforms, not on the path
// that reached it. So nothing walks the tree sequentially over the vocabulary:
//   prologue  B x Q blocks: (max, 1 / sum) of every draft row, once (not once per child tried); resets the queue;
//   decide    one wave of blocks takes (row, node) items from an atomic queue, node-major (the roots, which have the
//             most children, first); per item the old walk's per-node work: target row stats, siblings in node
//             order (accept test, residual update after a rejection), bonus sample -> next[B, N], bonus_at[B, N];
//   walk      fused: the last block to finish (atomic count after a __threadfence) follows next[] from the root
//             of every row (one thread per row) and writes accept_len, path (with its -1 padding) and bonus.
// The target row is copied to dynamic shared memory when V floats fit (V up to ~56k on Hopper, opt-in limit) and
// the residual overwrites the copy after the first rejection; above that the residual lives in a global
// [grid, V] workspace and the target row is read from global memory.
// Written without a GPU: compiled for sm_90 by .ci/compile_cuda.sh, never run (benchmarks/NOTES.md).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "hawk/common.cuh"

namespace hawk {

constexpr int kAcceptRejectBlock = 1024;
// 2 resident decide blocks per SM: 32 registers, ~100 B of spills (54 registers and 1 block without the bound);
// B = 2 x N = 128 items in one wave on 132 SMs. To be measured against 1.
constexpr int kDecideBlocksPerSm = 2;

struct AcceptRejectPlan {
  int grid = 0;              // decide blocks (at most one resident wave), each taking items from the queue
  int smem_bytes = 0;        // dynamic shared memory per block: V floats when the target row is kept there, else 0
  bool row_in_smem = false;  // false: the residual lives in `work` [grid, V] (global memory)
};

template <typename T>
struct AcceptRejectArgs {
  const T* target_logits;   // [B, N, V] processed target logits
  const T* draft_logits;    // [B, Q, V] processed draft logits
  const int64_t* tokens;    // [B, N]
  const int64_t* parents;   // [N], topological, node 0 the root
  const int64_t* laws;      // [B, N] draft row (draft law) each node was drawn from
  const float* uniforms;    // [B, N, 2]: [...,0] accept test, [...,1] sample
  float2* draft_stats;      // [B, Q] workspace: (max, 1 / sum exp(x - max)); 1 / sum == 0: the row defines no law
  float* work;              // [grid, V] workspace: residual rows when !plan.row_in_smem (else unused)
  int* tried;               // [grid, N] workspace: tokens of the valid siblings tried so far at a block's node
  int* next;                // [B, N] workspace: the child accepted at each node, or -1
  int* bonus_at;            // [B, N] workspace: the token sampled at each node (-1: invalid target row)
  unsigned* counters;       // [2] workspace: item queue, finished blocks (zeroed by the prologue)
  int64_t* accept_len;      // [B] out
  int64_t* path;            // [B, N] out (the kernel writes the -1 padding too)
  int64_t* bonus;           // [B] out
  int batch, num_nodes, num_rows, vocab;
  bool match_rule;
  AcceptRejectPlan plan;
};

struct RowStats {
  float max, inv_sum;
  bool valid;  // false: a NaN, a +inf, or no finite entry
};
constexpr unsigned kFullMask = 0xffffffffu;

// xor butterfly: every lane ends with the same bits (a + b == b + a), so every warp that reduces the same
// values agrees without a block barrier.
__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}
__device__ __forceinline__ int warp_max(int x) {
  for (int offset = 16; offset > 0; offset >>= 1) x = max(x, __shfl_xor_sync(kFullMask, x, offset));
  return x;
}

// (max, 1 / sum exp(x - max)) of one logits row. A NaN counts as +inf in the max: either makes the row invalid,
// as does no finite entry. With `copy` the row is also stored there as float (the block's shared-memory copy),
// and the second pass reads the copy.
template <int BLOCK, typename T>
__device__ RowStats row_stats(BlockOps<BLOCK>& ops, const T* row, int vocab, float* copy) {
  float local_max = -INFINITY;
#pragma unroll 4
  for (int v = threadIdx.x; v < vocab; v += BLOCK) {
    const float x = to_float(row[v]);
    if (copy) copy[v] = x;
    local_max = isnan(x) ? INFINITY : fmaxf(local_max, x);
  }
  const float row_max = ops.max(local_max);
  const bool valid = row_max > -INFINITY && row_max < INFINITY;
  float local_sum = 0.f;
  if (valid)
    for (int v = threadIdx.x; v < vocab; v += BLOCK) local_sum += expf((copy ? copy[v] : to_float(row[v])) - row_max);
  const float total = ops.sum(local_sum);
  return {valid ? row_max : 0.f, valid ? 1.f / total : 0.f, valid};
}

// The residual law before normalisation: the target's probabilities until the first rejection (read from the
// shared-memory copy in `work`, or from global memory), then work * scale.
template <typename T>
struct Residual {
  const T* target_row;
  float* work;
  RowStats target;
  bool row_in_work;
  bool is_target;
  float scale;
  __device__ float operator()(int v) const {
    if (!is_target) return work[v] * scale;
    const float x = row_in_work ? work[v] : to_float(target_row[v]);
    return expf(x - target.max) * target.inv_sum;
  }
};

template <int BLOCK>
struct SampleSlots {  // per warp: sum of weights and last positive entry of its segment; the block's answer
  float warp_total[BLOCK / 32];
  int warp_last[BLOCK / 32], result;
};

// One warp scans its segment [begin, end) 32 entries at a time (shuffle scan) for the first v with
// w[v] > 0 and lo + cdf(v) > threshold; rounding can leave none: then the segment's last positive entry.
template <typename W>
__device__ int scan_segment(const W& weights, int begin, int end, float lo, float threshold) {
  const int lane = threadIdx.x & 31;
  int last_positive = -1;
  float carry = 0.f;
  for (int base = begin; base < end; base += 32) {
    const int v = base + lane;
    const float w = v < end ? weights(v) : 0.f;
    float cdf = w;
    for (int offset = 1; offset < 32; offset <<= 1) {
      const float up = __shfl_up_sync(kFullMask, cdf, offset);
      if (lane >= offset) cdf += up;
    }
    const unsigned hit = __ballot_sync(kFullMask, w > 0.f && lo + (carry + cdf) > threshold);
    if (hit) return base + __ffs(hit) - 1;
    const unsigned positive = __ballot_sync(kFullMask, w > 0.f);
    if (positive) last_positive = base + 31 - __clz(positive);
    carry += __shfl_sync(kFullMask, cdf, 31);
  }
  return last_positive;
}

// Inverse CDF: smallest v with cumsum(w)[v] > u * sum(w), else the last v with w[v] > 0 (rounding). Each warp
// owns a contiguous segment of the vocabulary: (1) warp sums, (2) every thread forms the same sequential prefix
// of them, which splits [0, total) into disjoint per-warp intervals, (3) the one warp whose interval holds
// u * total scans its segment. Three barriers, whatever V (the old kernel: three per 1024 entries).
template <int BLOCK, typename W>
__device__ int sample_inverse_cdf(SampleSlots<BLOCK>& slots, const W& weights, int vocab, float uniform) {
  constexpr int kWarps = BLOCK / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int segment = ((vocab + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int begin = min(vocab, warp * segment), end = min(vocab, begin + segment);
  float local = 0.f;
  int last = -1;
  for (int v = begin + lane; v < end; v += 32) {
    const float w = weights(v);
    local += w;
    if (w > 0.f) last = v;
  }
  local = warp_sum(local);
  last = warp_max(last);
  if (lane == 0) slots.warp_total[warp] = local, slots.warp_last[warp] = last;
  if (threadIdx.x == 0) slots.result = INT_MAX;
  __syncthreads();
  float prefix = 0.f, lo = 0.f, hi = 0.f;
  int last_positive = -1;
  for (int w = 0; w < kWarps; ++w) {
    if (w == warp) lo = prefix;
    prefix += slots.warp_total[w];
    if (w == warp) hi = prefix;
    last_positive = max(last_positive, slots.warp_last[w]);
  }
  const float threshold = uniform * prefix;
  if (lo <= threshold && threshold < hi) {  // one warp at most: the intervals [lo, hi) are disjoint
    const int found = scan_segment(weights, begin, end, lo, threshold);
    if (lane == 0) slots.result = found;
  }
  __syncthreads();
  const int result = slots.result == INT_MAX ? last_positive : slots.result;
  __syncthreads();  // slots are reused by the next call
  return result;
}

// Draft mass of the tokens tried so far under one draft law; every warp computes it (no barrier).
template <typename T>
__device__ float tried_mass(const T* draft_row, const int* tried, int num_tried, float2 stats) {
  float local = 0.f;
  for (int i = threadIdx.x & 31; i < num_tried; i += 32)
    local += expf(to_float(draft_row[tried[i]]) - stats.x) * stats.y;
  return warp_sum(local);
}

// After a rejection: residual = max(residual - draft / norm, 0), kept unnormalised with scale 1 / mass.
template <int BLOCK, typename T>
__device__ void update_residual(BlockOps<BLOCK>& ops, Residual<T>& residual, const T* draft_row, float2 stats,
                                float norm, int vocab) {
  float mass = 0.f;
  for (int v = threadIdx.x; v < vocab; v += BLOCK) {  // in place: each thread reads and writes its own entries
    const float updated = fmaxf(residual(v) - expf(to_float(draft_row[v]) - stats.x) * stats.y / norm, 0.f);
    residual.work[v] = updated;
    mass += updated;
  }
  mass = ops.sum(mass);  // also the barrier that publishes work[] to the block
  residual.is_target = !(mass > 0.f);  // documented fallback: an empty residual is the target
  residual.scale = mass > 0.f ? 1.f / mass : 1.f;
  if (residual.is_target && residual.row_in_work) {  // the copy was overwritten: restore it (rare)
    for (int v = threadIdx.x; v < vocab; v += BLOCK) residual.work[v] = to_float(residual.target_row[v]);
    __syncthreads();
  }
}

// Siblings of `node` in node order: accept test against the residual, residual update only on a rejection.
// Returns the accepted child or -1 (then `residual` is the bonus token's law).
template <int BLOCK, typename T>
__device__ int try_children(BlockOps<BLOCK>& ops, const AcceptRejectArgs<T>& a, int64_t row, int node,
                            Residual<T>& residual, int* tried) {
  const int vocab = a.vocab;
  const int64_t* tokens = a.tokens + row * a.num_nodes;
  const int64_t* laws = a.laws + row * a.num_nodes;
  int num_tried = 0;
  for (int child = node + 1; child < a.num_nodes; ++child) {
    if (a.parents[child] != node) continue;
    const int64_t token = tokens[child], law = laws[child];
    if (token < 0 || token >= vocab || law < 0 || law >= a.num_rows) continue;
    const float2 stats = a.draft_stats[row * a.num_rows + law];
    if (!(stats.y > 0.f)) continue;  // the draft row defines no law
    const T* draft_row = a.draft_logits + (row * a.num_rows + law) * vocab;
    const float norm = 1.f - tried_mass(draft_row, tried, num_tried, stats);
    const float draft_prob = expf(to_float(draft_row[token]) - stats.x) * stats.y;
    const float draft_cond = norm > 0.f ? draft_prob / norm : 0.f;
    if (!(draft_cond > 0.f)) continue;
    const float residual_at_token = residual(static_cast<int>(token));
    if (threadIdx.x == 0) tried[num_tried] = static_cast<int>(token);
    ++num_tried;
    __syncthreads();  // every thread has read residual(token) (the update rewrites it) and sees tried[]
    if (a.uniforms[(row * a.num_nodes + child) * 2] * draft_cond < residual_at_token) return child;
    update_residual(ops, residual, draft_row, stats, norm, vocab);
  }
  return -1;
}

// The decision at one (row, node), written to next[] and bonus_at[].
template <int BLOCK, typename T>
__device__ void decide_node(BlockOps<BLOCK>& ops, SampleSlots<BLOCK>& slots, const AcceptRejectArgs<T>& a,
                            int64_t row, int node, float* work, int* tried) {
  const int64_t item = row * a.num_nodes + node;
  const bool row_in_work = a.plan.row_in_smem;
  const T* target_row = a.target_logits + item * a.vocab;
  const RowStats target = row_stats(ops, target_row, a.vocab, row_in_work ? work : nullptr);
  int next = -1, bonus = -1;  // an invalid target row ends the walk with bonus -1 (the decoder raises on it)
  if (target.valid) {
    Residual<T> residual{target_row, work, target, row_in_work, true, 1.f};
    const float sample_u = a.uniforms[item * 2 + 1];
    if (a.match_rule) {
      bonus = sample_inverse_cdf(slots, residual, a.vocab, sample_u);
      for (int child = node + 1; child < a.num_nodes && next < 0; ++child)
        if (a.parents[child] == node && a.tokens[row * a.num_nodes + child] == bonus) next = child;
    } else {
      next = try_children(ops, a, row, node, residual, tried);
      if (next < 0) bonus = sample_inverse_cdf(slots, residual, a.vocab, sample_u);
    }
  }
  if (threadIdx.x == 0) a.next[item] = next, a.bonus_at[item] = bonus;
  __syncthreads();  // work[] and tried[] are reused by the block's next item
}

// Phase 2 (the last block): from the root of every row along next[]; one thread per row.
template <int BLOCK, typename T>
__device__ void walk_rows(const AcceptRejectArgs<T>& a) {
  const int64_t total = static_cast<int64_t>(a.batch) * a.num_nodes;
  for (int64_t i = threadIdx.x; i < total; i += BLOCK) a.path[i] = -1;
  __syncthreads();
  for (int row = threadIdx.x; row < a.batch; row += BLOCK) {
    const int* next = a.next + static_cast<int64_t>(row) * a.num_nodes;
    int64_t* path = a.path + static_cast<int64_t>(row) * a.num_nodes;
    int node = 0, length = 0;
    path[0] = 0;
    for (int child = __ldcg(next); child >= 0; child = __ldcg(next + node)) {  // L2: written by other blocks
      path[++length] = child;
      node = child;
    }
    a.accept_len[row] = length;
    a.bonus[row] = __ldcg(a.bonus_at + static_cast<int64_t>(row) * a.num_nodes + node);
  }
}

template <int BLOCK, typename T>
__global__ void __launch_bounds__(BLOCK) accept_reject_prologue_kernel(AcceptRejectArgs<T> a) {
  using Ops = BlockOps<BLOCK>;
  __shared__ typename Ops::TempStorage temp;
  __shared__ float float_slot;
  __shared__ int int_slot;
  if (blockIdx.x == 0 && threadIdx.x < 2) a.counters[threadIdx.x] = 0u;
  if (a.match_rule || blockIdx.x >= static_cast<unsigned>(a.batch * a.num_rows)) return;  // uniform per block
  Ops ops{temp, float_slot, int_slot};
  const RowStats stats = row_stats(ops, a.draft_logits + static_cast<int64_t>(blockIdx.x) * a.vocab, a.vocab,
                                   static_cast<float*>(nullptr));
  if (threadIdx.x == 0) a.draft_stats[blockIdx.x] = make_float2(stats.max, stats.inv_sum);
}

template <int BLOCK, typename T>
__global__ void __launch_bounds__(BLOCK, kDecideBlocksPerSm) accept_reject_decide_kernel(AcceptRejectArgs<T> a) {
  using Ops = BlockOps<BLOCK>;
  extern __shared__ float row_copy[];  // [V] when plan.row_in_smem
  __shared__ typename Ops::TempStorage temp;
  __shared__ SampleSlots<BLOCK> slots;
  __shared__ float float_slot;
  __shared__ int int_slot;
  __shared__ unsigned item_slot;  // the item taken from the queue, for the whole block
  __shared__ bool last_block;
  Ops ops{temp, float_slot, int_slot};
  float* work = a.plan.row_in_smem ? row_copy : a.work + static_cast<int64_t>(blockIdx.x) * a.vocab;
  int* tried = a.tried + static_cast<int64_t>(blockIdx.x) * a.num_nodes;
  const unsigned items = static_cast<unsigned>(a.batch) * a.num_nodes;
  while (true) {
    if (threadIdx.x == 0) item_slot = atomicAdd(&a.counters[0], 1u);
    __syncthreads();
    const unsigned item = item_slot;
    __syncthreads();
    if (item >= items) break;
    decide_node(ops, slots, a, item % a.batch, static_cast<int>(item / a.batch), work, tried);  // node-major
  }
  __threadfence();  // this block's next[] / bonus_at[] before its count
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(&a.counters[1], 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  walk_rows<BLOCK>(a);
}

// Where the decide kernel keeps a V-entry row and how many of its blocks are resident (config->grid), per (device, V, whether
// shared memory may hold the row): driver queries made once (before any graph capture) and cached. Raises the
// kernel's dynamic shared-memory limit. HAWK_ACCEPT_REJECT_SMEM=0 forces the global-memory path (to compare).
template <typename T>
cudaError_t decide_config(int device, int vocab, AcceptRejectPlan* config) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, bool>, AcceptRejectPlan> cache;
  const char* env = std::getenv("HAWK_ACCEPT_REJECT_SMEM");
  const bool smem_allowed = !(env && env[0] == '0');
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(device, vocab, smem_allowed);
  const auto hit = cache.find(key);
  if (hit != cache.end()) return (*config = hit->second), cudaSuccess;
  auto kernel = accept_reject_decide_kernel<kAcceptRejectBlock, T>;
  int sms = 0, optin = 0, per_sm = 0;
  cudaFuncAttributes attrs;
  cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err == cudaSuccess) err = cudaFuncGetAttributes(&attrs, kernel);
  if (err != cudaSuccess) return err;
  const int64_t row_bytes = static_cast<int64_t>(vocab) * sizeof(float);
  config->row_in_smem = smem_allowed && static_cast<int64_t>(attrs.sharedSizeBytes) + row_bytes <= optin;
  config->smem_bytes = config->row_in_smem ? static_cast<int>(row_bytes) : 0;
  // the largest limit, so that no V lowers it under another V's launch
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             optin - static_cast<int>(attrs.sharedSizeBytes));
  if (err == cudaSuccess)
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kAcceptRejectBlock, config->smem_bytes);
  if (err != cudaSuccess) return err;
  config->grid = std::max(per_sm, 1) * sms;
  cache[key] = *config;
  return cudaSuccess;
}

// Grid and shared memory of the decide kernel for B x N items (the caller sizes `work` and `tried` from it).
template <typename T>
cudaError_t plan_accept_reject(int batch, int num_nodes, int vocab, AcceptRejectPlan* plan) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = decide_config<T>(device, vocab, plan);
  plan->grid = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(batch) * num_nodes, plan->grid));
  return err;
}

// Two launches: the prologue (draft stats, queue reset), then the decide kernel with its fused walk.
// args.plan comes from plan_accept_reject.
template <typename T>
cudaError_t launch_accept_reject(const AcceptRejectArgs<T>& args, int batch, cudaStream_t stream) {
  constexpr int kBlock = kAcceptRejectBlock;
  if (batch == 0) return cudaSuccess;
  const int stat_rows = args.match_rule ? 1 : std::max(1, batch * args.num_rows);  // match reads no draft row
  accept_reject_prologue_kernel<kBlock, T><<<stat_rows, kBlock, 0, stream>>>(args);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  accept_reject_decide_kernel<kBlock, T><<<args.plan.grid, kBlock, args.plan.smem_bytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace hawk

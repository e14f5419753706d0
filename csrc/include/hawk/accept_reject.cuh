// accept_reject device code: one thread block walks the tree of one batch row; the vocabulary is split
// across the block's threads (block-wide reductions and scans), fp32 math. The contract is the docstring of
// hawk_kernels/ops/reference/accept_reject.py; the decisions are the reference's given the same uniforms.
// No torch headers: raw pointers, sizes, a stream; the launcher returns a cudaError_t.
#pragma once

#include <cstdint>

#include "hawk/common.cuh"

namespace hawk {

template <typename T>
struct AcceptRejectArgs {
  const T* target_logits;   // [B, N, V] processed target logits
  const T* draft_logits;    // [B, Q, V] processed draft logits
  const int64_t* tokens;    // [B, N]
  const int64_t* parents;   // [N], topological, node 0 the root
  const int64_t* laws;      // [B, N] draft row (draft law) each node was drawn from
  const float* uniforms;    // [B, N, 2]: [...,0] accept test, [...,1] sample
  float* work;              // [B, V] residual workspace (unnormalised), touched only after a rejection
  int64_t* tried;           // [B, N] workspace: tokens of the valid siblings tried so far
  int64_t* accept_len;      // [B] out
  int64_t* path;            // [B, N] out (the kernel writes the -1 padding too)
  int64_t* bonus;           // [B] out
  int num_nodes, num_rows, vocab;
  bool match_rule;
};

struct RowStats {
  float max, inv_sum;
  bool valid;  // false: a NaN, a +inf, or no finite entry
};

template <int BLOCK, typename T>
__device__ RowStats row_stats(BlockOps<BLOCK>& ops, const T* row, int vocab) {
  float local_max = -INFINITY;
  int nan_count = 0;
  for (int v = threadIdx.x; v < vocab; v += BLOCK) {
    const float x = to_float(row[v]);
    if (isnan(x)) ++nan_count;
    else local_max = fmaxf(local_max, x);
  }
  const float row_max = ops.max(local_max);
  const bool valid = ops.int_sum(nan_count) == 0 && row_max > -INFINITY && row_max < INFINITY;
  const float safe_max = valid ? row_max : 0.f;
  float local_sum = 0.f;
  if (valid)
    for (int v = threadIdx.x; v < vocab; v += BLOCK) local_sum += expf(to_float(row[v]) - safe_max);
  const float total = ops.sum(local_sum);
  return {safe_max, valid ? 1.f / total : 0.f, valid};
}

// The residual law before normalisation: the target's probabilities until the first rejection, then
// work * scale.
template <typename T>
struct Residual {
  const T* target_row;
  const float* work;
  RowStats target;
  bool is_target;
  float scale;
  __device__ float operator()(int v) const {
    return is_target ? expf(to_float(target_row[v]) - target.max) * target.inv_sum : work[v] * scale;
  }
};

// Inverse CDF: smallest v with cumsum(w)[v] > u * sum(w), else the last v with w[v] > 0 (rounding).
template <int BLOCK, typename T>
__device__ int64_t sample_inverse_cdf(BlockOps<BLOCK>& ops, const Residual<T>& weights, int vocab, float uniform) {
  float local = 0.f;
  for (int v = threadIdx.x; v < vocab; v += BLOCK) local += weights(v);
  const float threshold = uniform * ops.sum(local);
  float carry = 0.f;
  int last_positive = -1;
  for (int start = 0; start < vocab; start += BLOCK) {
    const int v = start + threadIdx.x;
    const float w = v < vocab ? weights(v) : 0.f;
    float chunk_total;
    const float cdf = carry + ops.inclusive_scan(w, chunk_total);
    const int first = ops.int_min(v < vocab && cdf > threshold ? v : vocab);
    if (first < vocab) return first;
    last_positive = max(last_positive, ops.int_max(v < vocab && w > 0.f ? v : -1));
    carry += chunk_total;
  }
  return last_positive;
}

// Siblings in node order: accept test against the residual, residual update only on a rejection.
// Returns the accepted child or -1 (then `residual` is the bonus token's law).
template <int BLOCK, typename T>
__device__ int try_children(BlockOps<BLOCK>& ops, const AcceptRejectArgs<T>& a, int64_t row, int node,
                            Residual<T>& residual, float* work) {
  const int vocab = a.vocab;
  const int64_t* tokens = a.tokens + row * a.num_nodes;
  const int64_t* laws = a.laws + row * a.num_nodes;
  int64_t* tried = a.tried + row * a.num_nodes;
  int num_tried = 0;
  for (int child = node + 1; child < a.num_nodes; ++child) {
    if (a.parents[child] != node) continue;
    const int64_t token = tokens[child], law = laws[child];
    if (token < 0 || token >= vocab || law < 0 || law >= a.num_rows) continue;
    const T* draft_row = a.draft_logits + (row * a.num_rows + law) * vocab;
    const RowStats draft = row_stats(ops, draft_row, vocab);
    if (!draft.valid) continue;
    float local = 0.f;  // draft mass of earlier valid siblings' tokens
    for (int i = threadIdx.x; i < num_tried; i += BLOCK)
      local += expf(to_float(draft_row[tried[i]]) - draft.max) * draft.inv_sum;
    const float norm = 1.f - ops.sum(local);
    const float draft_prob = expf(to_float(draft_row[token]) - draft.max) * draft.inv_sum;
    const float draft_cond = norm > 0.f ? draft_prob / norm : 0.f;
    if (!(draft_cond > 0.f)) continue;
    if (threadIdx.x == 0) tried[num_tried] = token;
    ++num_tried;
    if (a.uniforms[(row * a.num_nodes + child) * 2] * draft_cond < residual(static_cast<int>(token))) {
      __syncthreads();
      return child;
    }
    float mass = 0.f;
    for (int v = threadIdx.x; v < vocab; v += BLOCK) {
      const float updated = fmaxf(residual(v) - expf(to_float(draft_row[v]) - draft.max) * draft.inv_sum / norm, 0.f);
      work[v] = updated;
      mass += updated;
    }
    mass = ops.sum(mass);  // also the barrier that publishes work[] and tried[] to the block
    residual.is_target = !(mass > 0.f);  // documented fallback: an empty residual is the target
    residual.scale = mass > 0.f ? 1.f / mass : 1.f;
  }
  __syncthreads();
  return -1;
}

template <int BLOCK, typename T>
__global__ void __launch_bounds__(BLOCK) accept_reject_kernel(AcceptRejectArgs<T> a) {
  using Ops = BlockOps<BLOCK>;
  __shared__ typename Ops::TempStorage temp;
  __shared__ float float_slot;
  __shared__ int int_slot;
  Ops ops{temp, float_slot, int_slot};
  const int64_t row = blockIdx.x;
  const int vocab = a.vocab;
  int64_t* path = a.path + row * a.num_nodes;
  float* work = a.work + row * vocab;
  for (int i = threadIdx.x; i < a.num_nodes; i += BLOCK) path[i] = i == 0 ? 0 : -1;
  int node = 0, length = 0;
  int64_t bonus = -1;
  while (true) {
    const T* target_row = a.target_logits + (row * a.num_nodes + node) * vocab;
    const RowStats target = row_stats(ops, target_row, vocab);
    if (!target.valid) break;  // bonus -1: the decoder raises on it
    Residual<T> residual{target_row, work, target, true, 1.f};
    const float sample_u = a.uniforms[(row * a.num_nodes + node) * 2 + 1];
    int next = -1;
    if (a.match_rule) {
      bonus = sample_inverse_cdf(ops, residual, vocab, sample_u);
      for (int child = node + 1; child < a.num_nodes && next < 0; ++child)
        if (a.parents[child] == node && a.tokens[row * a.num_nodes + child] == bonus) next = child;
    } else {
      next = try_children(ops, a, row, node, residual, work);
      if (next < 0) bonus = sample_inverse_cdf(ops, residual, vocab, sample_u);
    }
    if (next < 0) break;
    bonus = -1;
    ++length;
    if (threadIdx.x == 0) path[length] = next;
    node = next;
  }
  if (threadIdx.x == 0) {
    a.accept_len[row] = length;
    a.bonus[row] = bonus;
  }
}

template <typename T>
cudaError_t launch_accept_reject(const AcceptRejectArgs<T>& args, int batch, cudaStream_t stream) {
  constexpr int kBlock = 1024;
  if (batch == 0) return cudaSuccess;
  accept_reject_kernel<kBlock, T><<<batch, kBlock, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace hawk

// tree_mask device code: ONE launch, one block per node, all six outputs from the parent pointers.
// Each block stages the parents in shared memory, walks up from its node (ancestors in topological order,
// so the k-th ancestor from the root sits at retrieve column k), and writes its row of every output.
// No torch headers; the launcher returns a cudaError_t.
#pragma once

#include <cstdint>

#include "hawk/common.cuh"

namespace hawk {

struct TreeMaskArgs {
  const int64_t* parents;  // [N]
  const int64_t* prefix_len;  // [B]
  bool* mask;              // [N, N] out: mask[i, j] = j is i or an ancestor of i
  int64_t* depth;          // [N] out
  int64_t* position_ids;   // [B, N] out
  int64_t* first_child;    // [N] out
  int64_t* next_sibling;   // [N] out
  int64_t* retrieve;       // [N, max_depth + 1] out
  int num_nodes, batch, max_depth;
};

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) tree_mask_kernel(TreeMaskArgs a) {
  extern __shared__ int shared[];  // parents [N], then the root-to-node path [N + 1]
  int* parents = shared;
  int* path = shared + a.num_nodes;  // path[k] = ancestor at depth k
  __shared__ int depth_slot, first_child_slot, next_sibling_slot;
  const int node = blockIdx.x, n = a.num_nodes;
  for (int i = threadIdx.x; i < n; i += BLOCK) parents[i] = static_cast<int>(a.parents[i]);
  if (threadIdx.x == 0) {
    first_child_slot = n;
    next_sibling_slot = n;
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // walk up; a parent precedes its child, which also bounds the walk on bad input
    int depth = 0;
    for (int cur = node, up = node > 0 ? parents[node] : -1; up >= 0 && up < cur; cur = up, up = parents[up])
      ++depth;
    for (int k = depth, cur = node; k >= 0; --k, cur = parents[cur]) path[k] = cur;
    depth_slot = depth;
  }
  const int my_parent = node > 0 ? parents[node] : -2;
  int first = n, sibling = n;
  for (int c = node + 1 + threadIdx.x; c < n; c += BLOCK) {
    if (parents[c] == node) first = min(first, c);
    if (parents[c] == my_parent) sibling = min(sibling, c);
  }
  atomicMin(&first_child_slot, first);
  atomicMin(&next_sibling_slot, sibling);
  __syncthreads();
  const int depth = depth_slot;
  // mask row: j is an ancestor iff it is on the path at its own depth; path is sorted, so binary search
  bool* mask_row = a.mask + static_cast<int64_t>(node) * n;
  for (int j = threadIdx.x; j < n; j += BLOCK) {
    int lo = 0, hi = depth;
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (path[mid] < j) lo = mid + 1;
      else hi = mid;
    }
    mask_row[j] = path[lo] == j;
  }
  const int width = a.max_depth + 1;
  int64_t* retrieve_row = a.retrieve + static_cast<int64_t>(node) * width;
  for (int k = threadIdx.x; k < width; k += BLOCK) retrieve_row[k] = k <= depth ? path[k] : -1;
  for (int b = threadIdx.x; b < a.batch; b += BLOCK)
    a.position_ids[static_cast<int64_t>(b) * n + node] = a.prefix_len[b] + depth;
  if (threadIdx.x == 0) {
    a.depth[node] = depth;
    a.first_child[node] = first_child_slot < n ? first_child_slot : -1;
    a.next_sibling[node] = next_sibling_slot < n ? next_sibling_slot : -1;
  }
}

inline cudaError_t launch_tree_mask(const TreeMaskArgs& args, cudaStream_t stream) {
  constexpr int kBlock = 128;
  if (args.num_nodes == 0) return cudaSuccess;
  const size_t shared_bytes = (2 * static_cast<size_t>(args.num_nodes) + 1) * sizeof(int);
  if (shared_bytes > 48 * 1024) return cudaErrorInvalidValue;  // > 6000 nodes: not a speculation tree
  tree_mask_kernel<kBlock><<<args.num_nodes, kBlock, shared_bytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace hawk

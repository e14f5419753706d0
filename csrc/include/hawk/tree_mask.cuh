// tree_mask device code: ONE launch, one block per node, all three outputs from the parent pointers.
// Each block stages the parents in shared memory, walks up from its node (ancestors in topological order,
// so the k-th ancestor from the root sits at retrieve column k), and writes its mask row, depth and path.
// No torch headers; the launcher returns a cudaError_t.
#pragma once

#include <cstdint>

#include "hawk/common.cuh"

namespace hawk {

// Shared memory holds the parents [N] and one root-to-node path [N + 1] (ints): 48 KiB covers 6000 nodes.
constexpr int kTreeMaskMaxNodes = 6000;

struct TreeMaskArgs {
  const int64_t* parents;  // [N]
  bool* mask;              // [N, N] out: mask[i, j] = j is i or an ancestor of i
  int64_t* depth;          // [N] out
  int64_t* retrieve;       // [N, max_depth + 1] out
  int num_nodes, max_depth;
};

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) tree_mask_kernel(TreeMaskArgs a) {
  extern __shared__ int shared[];  // parents [N], then the root-to-node path [N + 1]
  int* parents = shared;
  int* path = shared + a.num_nodes;  // path[k] = ancestor at depth k
  __shared__ int depth_slot;
  const int node = blockIdx.x, n = a.num_nodes;
  for (int i = threadIdx.x; i < n; i += BLOCK) parents[i] = static_cast<int>(a.parents[i]);
  __syncthreads();
  if (threadIdx.x == 0) {  // walk up; a parent precedes its child, which also bounds the walk on bad input
    int depth = 0;
    for (int cur = node, up = node > 0 ? parents[node] : -1; up >= 0 && up < cur; cur = up, up = parents[up])
      ++depth;
    for (int k = depth, cur = node; k >= 0; --k, cur = parents[cur]) path[k] = cur;
    depth_slot = depth;
  }
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
  if (threadIdx.x == 0) a.depth[node] = depth;
}

inline cudaError_t launch_tree_mask(const TreeMaskArgs& args, cudaStream_t stream) {
  constexpr int kBlock = 128;
  if (args.num_nodes == 0) return cudaSuccess;
  if (args.num_nodes > kTreeMaskMaxNodes) return cudaErrorInvalidValue;  // not a speculation tree
  const size_t shared_bytes = (2 * static_cast<size_t>(args.num_nodes) + 1) * sizeof(int);
  tree_mask_kernel<kBlock><<<args.num_nodes, kBlock, shared_bytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace hawk

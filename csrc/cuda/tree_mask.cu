// hawk::tree_mask on CUDA: checks, current stream, one launch of include/hawk/tree_mask.cuh (no host sync:
// parents are validated by ops.tree_mask when validate=True).
#include <torch/library.h>

#include "dispatch.h"
#include "hawk/tree_mask.cuh"

namespace hawk {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> tree_mask_cuda(
    const at::Tensor& node_parent, const at::Tensor& prefix_len, int64_t max_depth) {
  check_cuda(node_parent, "node_parent");
  TORCH_CHECK(node_parent.dim() == 1, "node_parent: expected [N], got ", node_parent.sizes());
  TORCH_CHECK(prefix_len.dim() == 1 && prefix_len.device() == node_parent.device(),
              "prefix_len: expected [B] on ", node_parent.device());
  TORCH_CHECK(max_depth >= 0, "max_depth: expected >= 0, got ", max_depth);
  const int64_t num_nodes = node_parent.size(0), batch = prefix_len.size(0);
  TORCH_CHECK(num_nodes <= 6000, "node_parent: at most 6000 nodes, got ", num_nodes);
  const c10::cuda::CUDAGuard guard(node_parent.device());
  const auto parents = node_parent.to(at::kLong).contiguous();
  const auto prefix = prefix_len.to(at::kLong).contiguous();
  const auto opts = parents.options();
  auto mask = at::empty({num_nodes, num_nodes}, opts.dtype(at::kBool));
  auto depth = at::empty({num_nodes}, opts);
  auto position_ids = at::empty({batch, num_nodes}, opts);
  auto first_child = at::empty({num_nodes}, opts);
  auto next_sibling = at::empty({num_nodes}, opts);
  auto retrieve = at::empty({num_nodes, max_depth + 1}, opts);
  TreeMaskArgs args{parents.data_ptr<int64_t>(), prefix.data_ptr<int64_t>(), mask.data_ptr<bool>(),
                    depth.data_ptr<int64_t>(), position_ids.data_ptr<int64_t>(), first_child.data_ptr<int64_t>(),
                    next_sibling.data_ptr<int64_t>(), retrieve.data_ptr<int64_t>(), static_cast<int>(num_nodes),
                    static_cast<int>(batch), static_cast<int>(max_depth)};
  check_launch(launch_tree_mask(args, c10::cuda::getCurrentCUDAStream()), "tree_mask");
  return {mask, depth, position_ids, first_child, next_sibling, retrieve};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("tree_mask", &tree_mask_cuda); }

}  // namespace hawk

// hawk::tree_mask on CUDA: the shared checks (csrc/op_args.h), current stream, one launch of
// include/hawk/tree_mask.cuh (no host sync: parents are validated by ops.tree_mask when validate=True).
#include <torch/library.h>

#include "../op_args.h"
#include "dispatch.h"
#include "hawk/tree_mask.cuh"

namespace hawk {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> tree_mask_cuda(const at::Tensor& node_parent, int64_t max_depth) {
  check_cuda(node_parent, "node_parent");
  const int64_t num_nodes = check_tree_mask_args(node_parent, max_depth);
  TORCH_CHECK(num_nodes <= kTreeMaskMaxNodes, "node_parent: the CUDA kernel takes at most ", kTreeMaskMaxNodes,
              " nodes, got ", num_nodes);
  const c10::cuda::CUDAGuard guard(node_parent.device());
  const auto parents = node_parent.contiguous();
  const auto opts = parents.options();
  auto mask = at::empty({num_nodes, num_nodes}, opts.dtype(at::kBool));
  auto depth = at::empty({num_nodes}, opts);
  auto retrieve = at::empty({num_nodes, max_depth + 1}, opts);
  TreeMaskArgs args{parents.data_ptr<int64_t>(), mask.data_ptr<bool>(), depth.data_ptr<int64_t>(),
                    retrieve.data_ptr<int64_t>(), static_cast<int>(num_nodes), static_cast<int>(max_depth)};
  check_launch(launch_tree_mask(args, c10::cuda::getCurrentCUDAStream()), "tree_mask");
  return {mask, depth, retrieve};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("tree_mask", &tree_mask_cuda); }

}  // namespace hawk

// hawk::tree_mask on CPU: one pass over the parent pointers (topological order), as the reference; the
// parents are validated on the way (the host reads them anyway).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

#include "../op_args.h"

namespace hawk {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> tree_mask_cpu(const at::Tensor& node_parent, int64_t max_depth) {
  TORCH_CHECK(node_parent.device().is_cpu(), "node_parent: expected a CPU tensor, got device ", node_parent.device());
  const int64_t num_nodes = check_tree_mask_args(node_parent, max_depth);
  const auto parent_t = node_parent.contiguous();
  const int64_t* parents = parent_t.data_ptr<int64_t>();
  const auto opts = node_parent.options();
  auto mask = at::zeros({num_nodes, num_nodes}, opts.dtype(at::kBool));
  auto depth = at::zeros({num_nodes}, opts);
  auto retrieve = at::full({num_nodes, max_depth + 1}, -1, opts);
  bool* m = mask.data_ptr<bool>();
  int64_t* d = depth.data_ptr<int64_t>();
  int64_t* rt = retrieve.data_ptr<int64_t>();
  const int64_t width = max_depth + 1;
  for (int64_t node = 0; node < num_nodes; ++node) {
    if (node > 0) {
      const int64_t parent = parents[node];
      TORCH_CHECK(parent >= 0 && parent < node, "node_parent: node ", node, " has parent ", parent,
                  "; expected 0 <= parent < ", node);
      d[node] = d[parent] + 1;
      TORCH_CHECK(d[node] <= max_depth, "max_depth: node ", node, " is at depth ", d[node], " > max_depth=",
                  max_depth);
      std::copy(m + parent * num_nodes, m + (parent + 1) * num_nodes, m + node * num_nodes);
      std::copy(rt + parent * width, rt + (parent + 1) * width, rt + node * width);
    }
    m[node * num_nodes + node] = true;
    rt[node * width + d[node]] = node;
  }
  return {mask, depth, retrieve};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("tree_mask", &tree_mask_cpu); }

}  // namespace hawk
